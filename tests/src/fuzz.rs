//! The bad input drill (issue 9): random and hostile messages for every public RPC, generated
//! from the APIs' own descriptors, so a new method or field is fuzzed without any code here.
//!
//! * [`Schema`] decodes [`esim_proto::FILE_DESCRIPTOR_SET`] and lists every method of the five
//!   public services.
//! * [`Generator`] writes request messages as raw protobuf wire bytes from a message's
//!   descriptor: every scalar type, nested messages to a bounded depth, repeated fields (packed
//!   or not), hostile values (empty, 10 kB and 1 MB strings, RTL / zero-width / emoji / NUL,
//!   integer extremes, unknown enum numbers, huge and negative page sizes, garbage page tokens,
//!   plausible-but-wrong resource names), unknown field numbers, repeated singular fields, and
//!   wire bytes no decoder accepts. Each case has its own RNG seeded from the run's seed, the
//!   method and the case number, so one failing case reproduces alone.
//! * Methods that write (see [`is_mutating`]) always get a `request_id` that AIP-155 forbids, so
//!   every one of their calls must be refused, and the databases must not change at all.
//! * [`RawCodec`] sends those bytes through `tonic::client::Grpc` untouched.
//! * [`check_status`] is the verdict on one answer; [`DbSnapshot`] is every row of every table.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prost::Message as _;
use prost::bytes::{Buf, BufMut, Bytes};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// The public gRPC services, all reached through the gateway.
pub const PUBLIC_SERVICES: [&str; 5] = [
    "esim.catalog.v1.CatalogService",
    "esim.ordering.v1.OrderingService",
    "esim.provisioning.v1.ProvisioningService",
    "esim.usage.v1.UsageService",
    "esim.gateway.v1.GatewayService",
];

/// Method name prefixes of the calls that change state.
pub const MUTATING_PREFIXES: [&str; 16] = [
    "Create",
    "Update",
    "Delete",
    "Sync",
    "Report",
    "TopUp",
    "Cancel",
    "Suspend",
    "Resume",
    "Terminate",
    "Activate",
    "Provision",
    "Start",
    "Register",
    "Revoke",
    "Deliver",
];

/// One RPC of a public service.
#[derive(Debug, Clone)]
pub struct Method {
    /// `esim.catalog.v1.CatalogService`.
    pub service: String,
    /// `GetProduct`.
    pub name: String,
    /// Fully-qualified input message, with the leading dot (`.esim.catalog.v1.GetProductRequest`).
    pub input_type: String,
    /// Whether the server streams its answer.
    pub server_streaming: bool,
    /// Whether the client streams (none of the public APIs does; such methods are skipped).
    pub client_streaming: bool,
    /// Whether the method changes state: every generated request must then be refused.
    pub mutating: bool,
}

impl Method {
    /// The HTTP/2 path, `/esim.catalog.v1.CatalogService/GetProduct`.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.service, self.name)
    }
}

/// Whether method `name` changes state, by its name; a method whose request carries a
/// `request_id` (AIP-155 idempotency key) counts as mutating too.
pub fn is_mutating(name: &str) -> bool {
    MUTATING_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// The message and enum descriptors of every API, and the public methods.
#[derive(Debug)]
pub struct Schema {
    messages: HashMap<String, DescriptorProto>,
    enums: HashMap<String, Vec<i32>>,
    methods: Vec<Method>,
}

impl Schema {
    /// Decodes [`esim_proto::FILE_DESCRIPTOR_SET`].
    pub fn load() -> Self {
        let set =
            FileDescriptorSet::decode(esim_proto::FILE_DESCRIPTOR_SET).expect("the descriptor set decodes");
        let mut schema = Self {
            messages: HashMap::new(),
            enums: HashMap::new(),
            methods: Vec::new(),
        };
        for file in &set.file {
            let package = file.package();
            let prefix = if package.is_empty() {
                String::new()
            } else {
                format!(".{package}")
            };
            for message in &file.message_type {
                schema.add_message(&prefix, message);
            }
            for e in &file.enum_type {
                schema.enums.insert(
                    format!("{prefix}.{}", e.name()),
                    e.value.iter().map(|v| v.number()).collect(),
                );
            }
            for service in &file.service {
                let full = format!("{package}.{}", service.name());
                if !PUBLIC_SERVICES.contains(&full.as_str()) {
                    continue;
                }
                for method in &service.method {
                    schema.methods.push(Method {
                        service: full.clone(),
                        name: method.name().to_owned(),
                        input_type: method.input_type().to_owned(),
                        server_streaming: method.server_streaming(),
                        client_streaming: method.client_streaming(),
                        mutating: false,
                    });
                }
            }
        }
        let mut methods = std::mem::take(&mut schema.methods);
        for method in &mut methods {
            let has_request_id = schema.request_id_field(&method.input_type).is_some();
            method.mutating = is_mutating(&method.name) || has_request_id;
            assert!(
                !method.mutating || has_request_id,
                "{}: a mutating method without a request_id; the fuzzer cannot make its requests \
                 certainly invalid, teach it how",
                method.path()
            );
        }
        schema.methods = methods;
        schema
    }

    fn add_message(&mut self, prefix: &str, message: &DescriptorProto) {
        let full = format!("{prefix}.{}", message.name());
        for nested in &message.nested_type {
            self.add_message(&full, nested);
        }
        for e in &message.enum_type {
            self.enums.insert(
                format!("{full}.{}", e.name()),
                e.value.iter().map(|v| v.number()).collect(),
            );
        }
        self.messages.insert(full, message.clone());
    }

    /// Every method of the public services, in descriptor order.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    /// The descriptor of message `full_name` (with the leading dot).
    pub fn message(&self, full_name: &str) -> Option<&DescriptorProto> {
        self.messages.get(full_name)
    }

    /// For a read-only method: one case per string field, top-level or one message deep,
    /// holding control characters and nothing else set. Random cases reach a given filter with
    /// a NUL only by luck; this reaches every one every run. (Mutating methods are left out:
    /// the drill's random cases make each of them certainly invalid by its `request_id`.)
    pub fn control_character_cases<'a>(&'a self, method: &Method) -> Vec<Case> {
        if method.mutating {
            return Vec::new();
        }
        const VALUE: &str = "ab\0cd\u{1b}[31m\r\nef";
        let Some(input) = self.message(&method.input_type) else {
            return Vec::new();
        };
        let string_fields =
            |message: &'a DescriptorProto| message.field.iter().filter(|f| f.r#type() == Type::String);
        let mut poisoned: Vec<(String, Vec<u8>)> = Vec::new();
        for field in string_fields(input) {
            let mut bytes = Vec::new();
            put_len(&mut bytes, field.number() as u32, VALUE.as_bytes());
            poisoned.push((field.name().to_owned(), bytes));
        }
        let messages = input
            .field
            .iter()
            .filter(|f| f.r#type() == Type::Message && !f.type_name().starts_with(".google."));
        for field in messages {
            let Some(inner) = self.message(field.type_name()) else {
                continue;
            };
            for nested in string_fields(inner) {
                let mut message = Vec::new();
                put_len(&mut message, nested.number() as u32, VALUE.as_bytes());
                let mut bytes = Vec::new();
                put_len(&mut bytes, field.number() as u32, &message);
                poisoned.push((format!("{}.{}", field.name(), nested.name()), bytes));
            }
        }
        poisoned
            .into_iter()
            .enumerate()
            .map(|(index, (note, bytes))| Case {
                index,
                flavor: Flavor::ControlCharacters,
                bytes,
                note,
            })
            .collect()
    }

    /// The top-level `string request_id` field of message `full_name`.
    pub fn request_id_field(&self, full_name: &str) -> Option<&FieldDescriptorProto> {
        self.message(full_name)?
            .field
            .iter()
            .find(|f| f.name() == "request_id" && f.r#type() == Type::String && f.label() != Label::Repeated)
    }
}

/// What kind of case a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flavor {
    /// No fields at all (every field at its default).
    Empty,
    /// A random mix of plausible and hostile values.
    Random,
    /// Every field set, to extremes: overlong strings, integer limits, unknown enums, 1000
    /// repeated elements.
    Extreme,
    /// Strings full of RTL overrides, zero-width joiners, emoji, combining marks and NUL.
    Unicode,
    /// A valid message followed by bytes no protobuf decoder accepts.
    InvalidWire,
    /// Random bytes (reads only: they may happen to decode).
    Garbage,
    /// Over the 4 MiB default message limit.
    Oversize,
    /// One string field holding control characters (NUL first: PostgreSQL cannot store it),
    /// every other field unset; see [`Schema::control_character_cases`].
    ControlCharacters,
}

/// One generated request.
#[derive(Debug, Clone)]
pub struct Case {
    /// The case number within its method.
    pub index: usize,
    /// What kind of case it is.
    pub flavor: Flavor,
    /// The request message, protobuf wire bytes.
    pub bytes: Vec<u8>,
    /// For invalid wire bytes: what makes them invalid.
    pub note: String,
}

impl Case {
    /// Whether the bytes are certainly not a decodable message.
    pub fn undecodable(&self) -> bool {
        matches!(self.flavor, Flavor::InvalidWire)
    }

    /// A short description for failure reports: flavor, size and the first bytes in hex.
    pub fn describe(&self) -> String {
        let mut hex = String::new();
        for b in self.bytes.iter().take(96) {
            let _ = write!(hex, "{b:02x}");
        }
        if self.bytes.len() > 96 {
            hex.push('…');
        }
        format!(
            "case {} {:?}{} ({} bytes): {hex}",
            self.index,
            self.flavor,
            if self.note.is_empty() {
                String::new()
            } else {
                format!(" [{}]", self.note)
            },
            self.bytes.len()
        )
    }
}

/// A stable 64-bit FNV-1a hash (method paths to RNG seeds).
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for b in data {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The run's seed: `FUZZ_SEED` if set, else a fresh random one.
pub fn seed_from_env() -> u64 {
    match std::env::var("FUZZ_SEED") {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("FUZZ_SEED={value:?} is not a u64")),
        Err(_) => rand::random(),
    }
}

/// A count from environment variable `name`, `default` when unset.
pub fn count_from_env(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a count")),
        Err(_) => default,
    }
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

/// Appends `v` as a base-128 varint.
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_tag(buf: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(buf, (u64::from(field) << 3) | u64::from(wire));
}

fn put_len(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    put_tag(buf, field, WIRE_LEN);
    put_varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Resource collections of the APIs, for plausible-but-wrong names.
const COLLECTIONS: [&str; 12] = [
    "products",
    "orders",
    "esims",
    "syncRuns",
    "sftPlans",
    "pricingRules",
    "apiKeys",
    "addons",
    "events",
    "usage",
    "countries",
    "topUps",
];

/// Strings no AIP-155 request id may be (1-64 of `[A-Za-z0-9._~:-]`), all non-empty.
const BAD_REQUEST_IDS: [&str; 14] = [
    "has space",
    "orders/../x",
    "ünïcode",
    "nul\0byte",
    "emoji🙂",
    "\u{202E}rtl-override",
    "zero\u{200B}width",
    "id;DROP TABLE orders;--",
    "a/b",
    "%00",
    "tab\there",
    "new\nline",
    "\u{FEFF}bom",
    "quote'\"",
];

const UNICODE_PIECES: [&str; 16] = [
    "\u{202E}",
    "\u{202D}",
    "\u{200B}",
    "\u{200D}",
    "\u{FEFF}",
    "\0",
    "🙂",
    "🇯🇵",
    "👩‍👩‍👧‍👦",
    "e\u{301}\u{302}\u{303}",
    "עברית",
    "العربية",
    "日本語",
    "\u{10FFFF}",
    "\u{7F}\u{1B}[31m",
    "\u{FFFD}",
];

const SPECIAL_STRINGS: [&str; 22] = [
    "' OR '1'='1",
    "\"; DROP TABLE orders; --",
    "%",
    "_",
    "\\",
    "*",
    "..",
    "../../etc/passwd",
    "-1",
    "99999999999999999999999999",
    "NaN",
    "null",
    "{}",
    "ZZ",
    "jp",
    "JPN",
    "USD",
    "usd",
    "XXX",
    "price desc",
    "data_bytes asc, nonsense",
    "display_name,*,scopes",
];

/// Writes random request messages from descriptors.
#[derive(Debug)]
pub struct Generator<'a> {
    schema: &'a Schema,
    rng: StdRng,
    flavor: Flavor,
    /// Bytes still allowed for big strings in this message.
    budget: usize,
}

/// The most nested message levels written.
const MAX_DEPTH: usize = 3;

impl<'a> Generator<'a> {
    /// Case `index` of `method` in the run with `seed`.
    pub fn case(schema: &'a Schema, seed: u64, method: &Method, index: usize) -> Case {
        let case_seed =
            seed ^ fnv1a(method.path().as_bytes()) ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = StdRng::seed_from_u64(case_seed);
        let flavor = match index {
            0 => Flavor::Empty,
            1 => Flavor::Extreme,
            2 => Flavor::InvalidWire,
            3 => Flavor::Unicode,
            4 => Flavor::Oversize,
            5 if !method.mutating => Flavor::Garbage,
            _ => match rng.random_range(0..100) {
                0..70 => Flavor::Random,
                70..78 => Flavor::Extreme,
                78..86 => Flavor::Unicode,
                86..94 => Flavor::InvalidWire,
                94..99 if !method.mutating => Flavor::Garbage,
                94..99 => Flavor::Random,
                _ => Flavor::Oversize,
            },
        };
        let mut generator = Generator {
            schema,
            rng,
            flavor,
            budget: 3 << 20,
        };
        let mut note = String::new();
        let mut bytes = match flavor {
            Flavor::Empty => Vec::new(),
            Flavor::Garbage => {
                let len = generator.rng.random_range(1..512);
                (0..len).map(|_| generator.rng.random()).collect()
            }
            Flavor::Oversize => {
                // One string field (or an unknown field) of 5 MiB.
                let mut out = Vec::new();
                let field = generator
                    .string_fields(&method.input_type)
                    .first()
                    .map_or(999, |f| f.number() as u32);
                put_len(&mut out, field, &vec![b'x'; 5 << 20]);
                out
            }
            _ => generator.message(&method.input_type, 0, method.mutating),
        };
        if method.mutating {
            // Last, so it wins over any request_id written above (last one wins in protobuf).
            let field = schema
                .request_id_field(&method.input_type)
                .expect("checked in Schema::load");
            let bad = generator.bad_request_id();
            put_len(&mut bytes, field.number() as u32, bad.as_bytes());
        }
        if flavor == Flavor::InvalidWire {
            note = generator.invalid_tail(&method.input_type, &mut bytes);
        }
        Case {
            index,
            flavor,
            bytes,
            note,
        }
    }

    /// A request id AIP-155 forbids: overlong, or with a character outside `[A-Za-z0-9._~:-]`.
    fn bad_request_id(&mut self) -> String {
        match self.rng.random_range(0..10) {
            0 => "a".repeat(65),
            1 => "x".repeat(10_000),
            2 if self.rng.random_bool(0.2) => "r".repeat(1 << 20),
            _ => {
                let base = BAD_REQUEST_IDS[self.rng.random_range(0..BAD_REQUEST_IDS.len())];
                if self.rng.random_bool(0.5) {
                    format!("req-{}-{base}", self.rng.random::<u32>())
                } else {
                    base.to_owned()
                }
            }
        }
    }

    fn string_fields(&self, type_name: &str) -> Vec<FieldDescriptorProto> {
        self.schema
            .message(type_name)
            .map(|m| {
                m.field
                    .iter()
                    .filter(|f| f.r#type() == Type::String)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Appends bytes that make `bytes` undecodable; returns what they are.
    fn invalid_tail(&mut self, type_name: &str, bytes: &mut Vec<u8>) -> String {
        let known: Vec<FieldDescriptorProto> = self
            .schema
            .message(type_name)
            .map(|m| m.field.clone())
            .unwrap_or_default();
        let strings = self.string_fields(type_name);
        match self.rng.random_range(0..6) {
            0 => {
                let wire = if self.rng.random_bool(0.5) { 6 } else { 7 };
                put_tag(bytes, self.rng.random_range(1..100), wire);
                bytes.push(0);
                format!("wire type {wire}")
            }
            1 => {
                put_tag(bytes, 0, WIRE_VARINT);
                bytes.push(1);
                "field number 0".into()
            }
            2 => {
                put_tag(bytes, self.rng.random_range(1..100), WIRE_LEN);
                put_varint(bytes, 100);
                bytes.extend_from_slice(b"abc");
                "length beyond the end (truncated)".into()
            }
            3 => {
                put_tag(bytes, self.rng.random_range(1..100), WIRE_VARINT);
                bytes.extend_from_slice(&[0xff, 0xff, 0x80]);
                "truncated varint".into()
            }
            4 if !strings.is_empty() => {
                let field = &strings[self.rng.random_range(0..strings.len())];
                put_len(
                    bytes,
                    field.number() as u32,
                    &[b'o', b'k', 0xc3, 0x28, 0xff, 0xfe],
                );
                format!("invalid UTF-8 in {}", field.name())
            }
            _ => {
                // A known field with a wire type it can never have.
                match known.iter().find(|f| is_len_type(f.r#type())) {
                    Some(field) => {
                        put_tag(bytes, field.number() as u32, WIRE_FIXED32);
                        bytes.extend_from_slice(&[1, 2, 3, 4]);
                        format!("{} as fixed32", field.name())
                    }
                    None => {
                        bytes.extend_from_slice(&[0x80]);
                        "lone continuation byte".into()
                    }
                }
            }
        }
    }

    /// A message of type `type_name` at nesting `depth`; `skip_request_id` leaves the
    /// top-level `request_id` out (it is forced afterwards).
    fn message(&mut self, type_name: &str, depth: usize, skip_request_id: bool) -> Vec<u8> {
        let Some(descriptor) = self.schema.message(type_name) else {
            return Vec::new();
        };
        let fields = descriptor.field.clone();
        let mut out = Vec::new();
        let presence = match self.flavor {
            Flavor::Extreme => 1.0,
            _ => 0.6,
        };
        for field in &fields {
            if skip_request_id && depth == 0 && field.name() == "request_id" {
                continue;
            }
            if !self.rng.random_bool(presence) {
                continue;
            }
            if field.label() == Label::Repeated {
                self.repeated(field, depth, &mut out);
            } else {
                self.value(field, depth, &mut out);
                // Now and then the same singular field twice: the last one wins.
                if self.flavor == Flavor::Random && self.rng.random_bool(0.05) {
                    self.value(field, depth, &mut out);
                }
            }
        }
        if self.flavor == Flavor::Random && self.rng.random_bool(0.15) {
            self.unknown_field(&mut out);
        }
        out
    }

    fn unknown_field(&mut self, out: &mut Vec<u8>) {
        let number = match self.rng.random_range(0..3) {
            0 => self.rng.random_range(100..20_000),
            1 => (1 << 29) - 1,
            _ => self.rng.random_range(19_000..20_000), // the reserved range
        };
        match self.rng.random_range(0..4) {
            0 => {
                put_tag(out, number, WIRE_VARINT);
                put_varint(out, self.rng.random());
            }
            1 => {
                put_tag(out, number, WIRE_FIXED64);
                out.extend_from_slice(&self.rng.random::<u64>().to_le_bytes());
            }
            2 => {
                put_tag(out, number, WIRE_FIXED32);
                out.extend_from_slice(&self.rng.random::<u32>().to_le_bytes());
            }
            _ => {
                let len = self.rng.random_range(0..64);
                let data: Vec<u8> = (0..len).map(|_| self.rng.random()).collect();
                put_len(out, number, &data);
            }
        }
    }

    fn repeated(&mut self, field: &FieldDescriptorProto, depth: usize, out: &mut Vec<u8>) {
        let ty = field.r#type();
        let count = match self.flavor {
            Flavor::Extreme if !is_len_type(ty) => 1000,
            Flavor::Extreme => 50,
            _ if self.rng.random_bool(0.05) => self.rng.random_range(50..300),
            _ => self.rng.random_range(0..4),
        };
        if !is_len_type(ty) && self.rng.random_bool(0.7) {
            // Packed (the proto3 default).
            let mut packed = Vec::new();
            for _ in 0..count {
                self.scalar(field, &mut packed);
            }
            put_len(out, field.number() as u32, &packed);
        } else {
            for _ in 0..count {
                self.value(field, depth, out);
            }
        }
    }

    /// One tagged value of `field`.
    fn value(&mut self, field: &FieldDescriptorProto, depth: usize, out: &mut Vec<u8>) {
        let number = field.number() as u32;
        match field.r#type() {
            Type::String => {
                let s = self.string(field.name());
                put_len(out, number, s.as_bytes());
            }
            Type::Bytes => {
                let len = if self.flavor == Flavor::Extreme {
                    10_000
                } else {
                    self.rng.random_range(0..64)
                };
                let data: Vec<u8> = (0..len).map(|_| self.rng.random()).collect();
                put_len(out, number, &data);
            }
            Type::Message => {
                let inner = if depth + 1 >= MAX_DEPTH {
                    Vec::new()
                } else {
                    self.message(field.type_name(), depth + 1, false)
                };
                put_len(out, number, &inner);
            }
            Type::Group => {}
            ty => {
                put_tag(out, number, wire_type(ty));
                self.scalar(field, out);
            }
        }
    }

    /// The untagged value of a numeric `field`.
    fn scalar(&mut self, field: &FieldDescriptorProto, out: &mut Vec<u8>) {
        let extreme = self.flavor == Flavor::Extreme || self.rng.random_bool(0.3);
        let name = field.name();
        match field.r#type() {
            Type::Int32 => {
                let v = if name.contains("page_size") {
                    [i32::MAX, -1, i32::MIN, 0, 1, 1000, 1_000_000, 100_001][self.rng.random_range(0..8)]
                } else {
                    self.int32(extreme)
                };
                // Negative int32 is sign-extended to ten bytes on the wire.
                put_varint(out, i64::from(v) as u64);
            }
            Type::Int64 => put_varint(out, self.int64(extreme) as u64),
            Type::Uint32 => put_varint(out, u64::from(self.int32(extreme) as u32)),
            Type::Uint64 => put_varint(out, self.int64(extreme) as u64),
            Type::Sint32 => put_varint(out, zigzag(i64::from(self.int32(extreme)))),
            Type::Sint64 => put_varint(out, zigzag(self.int64(extreme))),
            Type::Bool => {
                let v = match self.rng.random_range(0..10_u64) {
                    0 => 2,
                    1 => u64::MAX,
                    n => n % 2,
                };
                put_varint(out, v);
            }
            Type::Enum => {
                let known = self
                    .schema
                    .enums
                    .get(field.type_name())
                    .cloned()
                    .unwrap_or_default();
                let v = if !extreme && !known.is_empty() && self.rng.random_bool(0.6) {
                    known[self.rng.random_range(0..known.len())]
                } else {
                    [-1, 999, i32::MAX, i32::MIN, known.len() as i32][self.rng.random_range(0..5)]
                };
                put_varint(out, i64::from(v) as u64);
            }
            Type::Fixed32 | Type::Sfixed32 => out.put_i32_le(self.int32(extreme)),
            Type::Fixed64 | Type::Sfixed64 => out.put_i64_le(self.int64(extreme)),
            Type::Float => {
                let v = [
                    f32::NAN,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    -0.0,
                    f32::MAX,
                    f32::MIN_POSITIVE,
                    1.5,
                ][self.rng.random_range(0..7)];
                out.put_f32_le(v);
            }
            Type::Double => {
                let v = [
                    f64::NAN,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    -0.0,
                    f64::MAX,
                    1e-300,
                    2.5,
                ][self.rng.random_range(0..7)];
                out.put_f64_le(v);
            }
            Type::String | Type::Bytes | Type::Message | Type::Group => {}
        }
    }

    fn int32(&mut self, extreme: bool) -> i32 {
        if extreme {
            [
                i32::MIN,
                i32::MAX,
                -1,
                0,
                i32::MIN + 1,
                i32::MAX - 1,
                -999_999_999,
                1_000_000_000,
            ][self.rng.random_range(0..8)]
        } else {
            self.rng.random_range(-5..1000)
        }
    }

    fn int64(&mut self, extreme: bool) -> i64 {
        if extreme {
            [
                i64::MIN,
                i64::MAX,
                -1,
                0,
                i64::from(i32::MAX) + 1,
                i64::from(i32::MIN) - 1,
                253_402_300_800, // year 10000 in Unix seconds
                -62_135_596_801, // before year 1
                -999_999_999_999_999_999,
            ][self.rng.random_range(0..9)]
        } else {
            self.rng.random_range(-5..1_000_000_000_000)
        }
    }

    /// A string value for field `name`.
    fn string(&mut self, name: &str) -> String {
        match self.flavor {
            Flavor::Extreme => {
                if self.budget >= 1 << 20 && self.rng.random_bool(0.1) {
                    self.budget -= 1 << 20;
                    return "M".repeat(1 << 20);
                }
                if self.budget >= 10_000 {
                    self.budget -= 10_000;
                    return self.long_string(10_000);
                }
                "x".repeat(200)
            }
            Flavor::Unicode => self.unicode(),
            _ => match self.rng.random_range(0..100) {
                0..10 => String::new(),
                10..35 => self.resource_name(),
                35..45 if name.contains("token") || name.contains("cursor") || name.contains("after") => {
                    self.page_token()
                }
                35..45 => SPECIAL_STRINGS[self.rng.random_range(0..SPECIAL_STRINGS.len())].to_owned(),
                45..55 => self.unicode(),
                55..62 if self.budget >= 10_000 => {
                    self.budget -= 10_000;
                    self.long_string(10_000)
                }
                62 if self.budget >= 1 << 20 => {
                    self.budget -= 1 << 20;
                    "L".repeat(1 << 20)
                }
                63..75 => self.page_token(),
                _ => {
                    let len = self.rng.random_range(1..24);
                    (0..len)
                        .map(|_| char::from(self.rng.random_range(0x20u8..0x7f)))
                        .collect()
                }
            },
        }
    }

    fn long_string(&mut self, len: usize) -> String {
        let unit = match self.rng.random_range(0..4) {
            0 => "a",
            1 => "🙂",
            2 => "orders/",
            _ => "\u{200B}",
        };
        let mut s = unit.repeat(len / unit.len() + 1);
        while s.len() > len {
            s.pop();
        }
        s
    }

    fn unicode(&mut self) -> String {
        let pieces = self.rng.random_range(1..12);
        let mut s = String::new();
        if self.rng.random_bool(0.4) {
            s.push_str(COLLECTIONS[self.rng.random_range(0..COLLECTIONS.len())]);
            s.push('/');
        }
        for _ in 0..pieces {
            s.push_str(UNICODE_PIECES[self.rng.random_range(0..UNICODE_PIECES.len())]);
        }
        s
    }

    fn resource_name(&mut self) -> String {
        let collection = COLLECTIONS[self.rng.random_range(0..COLLECTIONS.len())];
        let other = COLLECTIONS[self.rng.random_range(0..COLLECTIONS.len())];
        let id = match self.rng.random_range(0..10) {
            0 => String::new(),
            1 => "..".into(),
            2 => "../x".into(),
            3 => format!("{}", self.rng.random::<i64>()),
            4 => "0190f8e2-7b1c-7000-8000-000000000000".into(),
            5 => "%2e%2e%2fx".into(),
            6 => "*".into(),
            7 => "ORD-0000000001".into(),
            8 => "a".repeat(300),
            _ => format!("{:032x}", self.rng.random::<u128>()),
        };
        match self.rng.random_range(0..8) {
            0 => format!("{collection}/{id}"),
            1 => format!("{collection}/{id}/{other}/{id}"),
            2 => format!("/{collection}/{id}"),
            3 => format!("{collection}//{id}"),
            4 => format!("{collection}/{id}/"),
            5 => format!("{collection}/../{other}/{id}"),
            6 => format!("esims/{id}/usage"),
            _ => format!("{}/{id}", collection.to_uppercase()),
        }
    }

    fn page_token(&mut self) -> String {
        match self.rng.random_range(0..6) {
            0 => "AAAA".into(),
            1 => "not a token".into(),
            2 => "eyJxIjoiIiwiYSI6bnVsbH0".into(), // base64url of {"q":"","a":null}
            3 => "eyJxIjoiZm9vIiwiYSI6Wy05OTk5OTk5OTk5OTk5OTk5OTk5XX0=".into(),
            4 => {
                let len = self.rng.random_range(1..200);
                (0..len)
                    .map(|_| {
                        let chars = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/";
                        char::from(chars[self.rng.random_range(0..chars.len())])
                    })
                    .collect()
            }
            _ => "=".repeat(self.rng.random_range(1..10)),
        }
    }
}

fn is_len_type(ty: Type) -> bool {
    matches!(ty, Type::String | Type::Bytes | Type::Message | Type::Group)
}

fn wire_type(ty: Type) -> u8 {
    match ty {
        Type::Fixed64 | Type::Sfixed64 | Type::Double => WIRE_FIXED64,
        Type::Fixed32 | Type::Sfixed32 | Type::Float => WIRE_FIXED32,
        Type::String | Type::Bytes | Type::Message | Type::Group => WIRE_LEN,
        _ => WIRE_VARINT,
    }
}

/// A codec passing message bytes through untouched, both ways.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// The encoder and decoder of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCoder;
    type Decoder = RawCoder;

    fn encoder(&mut self) -> RawCoder {
        RawCoder
    }

    fn decoder(&mut self) -> RawCoder {
        RawCoder
    }
}

impl Encoder for RawCoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// How one call ended.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A unary OK, or a stream that ended OK or was cut by us after its first messages.
    Ok,
    /// A status.
    Status(Code, String),
    /// No answer within the time limit (unary calls only).
    Hung,
}

impl Answer {
    /// The status code (`Ok` for OK and cut streams).
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Ok => Some(Code::Ok),
            Self::Status(code, _) => Some(*code),
            Self::Hung => None,
        }
    }
}

/// Longest wait for a unary answer.
pub const UNARY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stream is read before it is cut.
pub const STREAM_WINDOW: Duration = Duration::from_millis(400);
/// Most stream messages read.
pub const STREAM_MESSAGES: usize = 3;

/// Sends `bytes` as the request of `method` over `channel` with `authorization`.
pub async fn call(
    channel: tonic::transport::Channel,
    authorization: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    method: &Method,
    bytes: Bytes,
) -> Answer {
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(err) = grpc.ready().await {
        return Answer::Status(Code::Unavailable, format!("channel not ready: {err}"));
    }
    let path = http::uri::PathAndQuery::try_from(method.path()).expect("a valid path");
    let mut request = tonic::Request::new(bytes);
    request
        .metadata_mut()
        .insert("authorization", authorization.clone());
    if method.server_streaming {
        request.set_timeout(Duration::from_secs(5));
        let opened =
            tokio::time::timeout(UNARY_TIMEOUT, grpc.server_streaming(request, path, RawCodec)).await;
        let mut stream = match opened {
            Err(_) => return Answer::Hung,
            Ok(Err(status)) => return Answer::Status(status.code(), status.message().to_owned()),
            Ok(Ok(response)) => response.into_inner(),
        };
        let deadline = tokio::time::Instant::now() + STREAM_WINDOW;
        for _ in 0..STREAM_MESSAGES {
            match tokio::time::timeout_at(deadline, stream.message()).await {
                // Still open when we stop listening: fine, we cut it.
                Err(_) => return Answer::Ok,
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => return Answer::Ok,
                Ok(Err(status)) => return Answer::Status(status.code(), status.message().to_owned()),
            }
        }
        Answer::Ok
    } else {
        match tokio::time::timeout(UNARY_TIMEOUT, grpc.unary::<_, Bytes, _>(request, path, RawCodec)).await {
            Err(_) => Answer::Hung,
            Ok(Ok(_)) => Answer::Ok,
            Ok(Err(status)) => Answer::Status(status.code(), status.message().to_owned()),
        }
    }
}

/// Words by which an UNAVAILABLE names the upstream that is unavailable. The backends are not
/// among them: they all run (and are checked SERVING afterwards), so the gateway's
/// "<service> is unavailable" during the drill is a finding, not an outage.
const UNAVAILABLE_UPSTREAMS: [&str; 5] = ["MP", "FMS", "SFT", "upstream", "sandbox"];

/// The verdict on `answer` to `case` of `method`: `Err` says what is wrong.
///
/// * Never INTERNAL, UNKNOWN, DATA_LOSS or UNIMPLEMENTED (every public method is served),
///   nor UNAUTHENTICATED (the key is valid), nor a hang. Bytes that are not a protobuf message
///   at all get INVALID_ARGUMENT (the runtime turns tonic's INTERNAL "failed to decode
///   Protobuf message" into it).
/// * UNAVAILABLE only naming the upstream (MP, FMS, SFT) it could not reach: the backends all
///   run during the drill.
/// * Mutating methods and undecodable bytes: never OK.
pub fn check_status(method: &Method, case: &Case, answer: &Answer) -> Result<(), String> {
    let (code, message) = match answer {
        Answer::Hung => return Err(format!("no answer within {UNARY_TIMEOUT:?}")),
        Answer::Ok => (Code::Ok, ""),
        Answer::Status(code, message) => (*code, message.as_str()),
    };
    match code {
        Code::Ok if method.mutating => Err("OK for a request with an invalid request_id".into()),
        Code::Ok if case.undecodable() => Err("OK for undecodable bytes".into()),
        Code::Ok
        | Code::InvalidArgument
        | Code::NotFound
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::OutOfRange
        | Code::Aborted => Ok(()),
        // Our own cut of a stream, or the deadline we sent with it.
        Code::DeadlineExceeded | Code::Cancelled if method.server_streaming => Ok(()),
        Code::Unavailable
            if !message.starts_with("esim.")
                && UNAVAILABLE_UPSTREAMS.iter().any(|name| message.contains(name)) =>
        {
            Ok(())
        }
        code => Err(format!("{code:?}: {message}")),
    }
}

/// Panics seen in the process outside the tests themselves (service code and libraries).
static PANICS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

/// Installs (once) a panic hook recording every panic whose location is not under `tests/`
/// (a test's own failed assertion), then chains to the previous hook.
pub fn record_panics() {
    let mut installed = false;
    PANICS.get_or_init(|| {
        installed = true;
        Mutex::new(Vec::new())
    });
    if !installed {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        if !location.starts_with("tests/") && !location.contains("/tests/e2e/") {
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let thread = std::thread::current().name().unwrap_or("?").to_owned();
            if let Some(panics) = PANICS.get()
                && let Ok(mut panics) = panics.lock()
            {
                panics.push(format!("panic at {location} (thread {thread}): {payload}"));
            }
        }
        previous(info);
    }));
}

/// The panics recorded so far by [`record_panics`].
pub fn recorded_panics() -> Vec<String> {
    PANICS
        .get()
        .and_then(|p| p.lock().ok().map(|p| p.clone()))
        .unwrap_or_default()
}

/// Every row of every table of some databases: `(database, table)` → sorted rows as text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DbSnapshot(pub BTreeMap<(String, String), Vec<String>>);

impl DbSnapshot {
    /// Reads every table of every database in `urls` (`(label, url)`).
    pub async fn take(urls: &[(String, String)]) -> Result<Self, sea_orm::DbErr> {
        let mut tables = BTreeMap::new();
        for (label, url) in urls {
            let db = sea_orm::Database::connect(url.as_str()).await?;
            let backend = db.get_database_backend();
            let list = match backend {
                DatabaseBackend::Sqlite => {
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
                }
                _ => {
                    "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
                }
            };
            let names: Vec<String> = db
                .query_all_raw(Statement::from_string(backend, list))
                .await?
                .iter()
                .map(|row| row.try_get_by_index::<String>(0))
                .collect::<Result<_, _>>()?;
            for table in names {
                let select = match backend {
                    DatabaseBackend::Sqlite => {
                        let columns: Vec<String> = db
                            .query_all_raw(Statement::from_string(
                                backend,
                                format!("SELECT name FROM pragma_table_info('{table}')"),
                            ))
                            .await?
                            .iter()
                            .map(|row| row.try_get_by_index::<String>(0))
                            .collect::<Result<_, _>>()?;
                        let row = columns
                            .iter()
                            .map(|c| format!("quote(\"{c}\")"))
                            .collect::<Vec<_>>()
                            .join(" || '|' || ");
                        format!("SELECT {row} FROM \"{table}\"")
                    }
                    _ => format!("SELECT CAST(t AS TEXT) FROM \"{table}\" AS t"),
                };
                let mut rows: Vec<String> = db
                    .query_all_raw(Statement::from_string(backend, select))
                    .await?
                    .iter()
                    .map(|row| row.try_get_by_index::<String>(0))
                    .collect::<Result<_, _>>()?;
                rows.sort();
                tables.insert((label.clone(), table), rows);
            }
            db.close().await?;
        }
        Ok(Self(tables))
    }

    /// Row count of `table` in database `label`.
    pub fn rows(&self, label: &str, table: &str) -> usize {
        self.0
            .get(&(label.to_owned(), table.to_owned()))
            .map_or(0, Vec::len)
    }

    /// What differs from `later`, table by table (empty when nothing does), except the
    /// tables in `exempt` (`(database, table)`).
    pub fn diff(&self, later: &Self, exempt: &[(&str, &str)]) -> Vec<String> {
        let mut out = Vec::new();
        let keys: std::collections::BTreeSet<_> = self.0.keys().chain(later.0.keys()).collect();
        for key in keys {
            if exempt.iter().any(|(db, t)| key.0 == *db && key.1 == *t) {
                continue;
            }
            let before = self.0.get(key).map(Vec::as_slice).unwrap_or_default();
            let after = later.0.get(key).map(Vec::as_slice).unwrap_or_default();
            if before == after {
                continue;
            }
            let added: Vec<&String> = after.iter().filter(|r| !before.contains(r)).take(3).collect();
            let removed: Vec<&String> = before.iter().filter(|r| !after.contains(r)).take(3).collect();
            let cut = |rows: Vec<&String>| -> Vec<String> {
                rows.into_iter().map(|r| r.chars().take(300).collect()).collect()
            };
            out.push(format!(
                "{}.{}: {} rows before, {} after; added e.g. {:?}; removed or changed e.g. {:?}",
                key.0,
                key.1,
                before.len(),
                after.len(),
                cut(added),
                cut(removed)
            ));
        }
        out
    }
}

/// An HTTP/1.1 answer to [`http_post`]: the status, or why there was none.
pub type HttpAnswer = Result<u16, String>;

/// POSTs `body` to `path_and_query` at `addr` over a fresh connection (HTTP/1.1,
/// `Connection: close`) and returns the status code. `chunked` sends the body with chunked
/// transfer encoding instead of a `Content-Length`. The body is written while the answer is
/// read, so an early 413 is seen even when the server stops reading.
pub async fn http_post(
    addr: std::net::SocketAddr,
    path_and_query: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
    chunked: bool,
) -> HttpAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|err| format!("connect: {err}"))?;
    let (mut reader, mut writer) = stream.into_split();
    let mut head = format!("POST {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(content_type) = content_type {
        let _ = write!(head, "Content-Type: {content_type}\r\n");
    }
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    } else {
        let _ = write!(head, "Content-Length: {}\r\n\r\n", body.len());
    }
    let writing = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        if chunked {
            for chunk in body.chunks(8192) {
                writer
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                writer.write_all(chunk).await?;
                writer.write_all(b"\r\n").await?;
            }
            writer.write_all(b"0\r\n\r\n").await?;
        } else {
            writer.write_all(&body).await?;
        }
        writer.flush().await?;
        // Keep the write half open until the answer is read: a FIN would be fine too, but
        // some servers treat a half-close as an abort.
        Ok::<_, std::io::Error>(writer)
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0_u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        return Ok(());
                    }
                }
                Err(err) => return Err(err),
            }
        }
    })
    .await;
    writing.abort();
    let status_line =
        String::from_utf8_lossy(answer.split(|b| *b == b'\n').next().unwrap_or_default()).into_owned();
    let parsed = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok());
    match (parsed, read) {
        (Some(code), _) => Ok(code),
        (None, Err(_)) => Err("no answer within 20 s".into()),
        (None, Ok(Err(err))) => Err(format!("connection error before an answer: {err}")),
        (None, Ok(Ok(()))) => Err(format!("no HTTP status line: {status_line:?}")),
    }
}
