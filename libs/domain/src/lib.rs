//! Domain types of the eSIM suite: ICCID, EID, activation code, country, money.
