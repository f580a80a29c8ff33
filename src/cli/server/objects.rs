//! Per-session caps on the objects a client keeps in the server: named prepared statements
//! (`Parse`) and named portals (`Bind`).
//!
//! Invariant: a session holds at most [`MAX_STATEMENTS`] named statements whose estimated
//! memory is at most [`MAX_STATEMENT_BYTES`] together, and at most [`MAX_PORTALS`] named
//! portals whose parameters take at most [`MAX_PORTAL_BYTES`] together (one statement or
//! portal alone may be larger: it is bounded by the message size). A message that would
//! go past a cap is refused (`54000`) before pgwire stores anything, and the session goes on.
//! The unnamed statement and portal replace themselves, so they need no count.
//!
//! The counts are kept here, beside pgwire's store: a name is forgotten when the client
//! closes it, and names the store no longer holds (a failed Parse, portals dropped at the
//! end of a block) are pruned before a cap is enforced.

use std::collections::HashMap;

use pgwire::api::store::PortalStore;
use pgwire::error::PgWireError;
use pgwire::messages::PgWireFrontendMessage;
use pgwire::messages::extendedquery::{TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT};

use super::sqlstate;

/// Named prepared statements one session may hold.
pub const MAX_STATEMENTS: usize = 1000;
/// Estimated memory of one session's named statements together.
pub const MAX_STATEMENT_BYTES: usize = 64 << 20;
/// Named portals one session may hold (each may hold a suspended query).
pub const MAX_PORTALS: usize = 64;
/// Bytes of parameters of one session's named portals together.
pub const MAX_PORTAL_BYTES: usize = 256 << 20;

/// What a statement costs besides its text: its plan, result columns and types take many
/// times its text (a 300-column SELECT prepared 20,000 times took 4 GB).
const STATEMENT_TEXT_FACTOR: usize = 64;
const STATEMENT_OVERHEAD: usize = 4 << 10;
const PORTAL_OVERHEAD: usize = 1 << 10;

/// The named statements and portals of one session, with their estimated bytes.
#[derive(Default)]
pub struct Objects {
    statements: HashMap<String, usize>,
    portals: HashMap<String, usize>,
}

impl Objects {
    /// Checks `message` against the caps before it is processed, and counts what it adds.
    pub fn admit<P: PortalStore>(
        &mut self,
        message: &PgWireFrontendMessage,
        store: &P,
    ) -> Result<(), PgWireError> {
        match message {
            PgWireFrontendMessage::Parse(parse) => {
                let Some(name) = parse.name.as_ref().filter(|n| !n.is_empty()) else {
                    return Ok(());
                };
                // A named statement is replaced only after Close, as PostgreSQL's.
                if store.get_statement(name).is_some() {
                    return Err(sqlstate::error(
                        "42P05",
                        format!("prepared statement \"{name}\" already exists"),
                    ));
                }
                let cost = parse
                    .query
                    .len()
                    .saturating_mul(STATEMENT_TEXT_FACTOR)
                    .saturating_add(4 * parse.type_oids.len() + STATEMENT_OVERHEAD);
                admit(
                    &mut self.statements,
                    name,
                    cost,
                    (MAX_STATEMENTS, MAX_STATEMENT_BYTES),
                    |n| store.get_statement(n).is_some(),
                    "prepared statements",
                )
            }
            PgWireFrontendMessage::Bind(bind) => {
                let Some(name) = bind.portal_name.as_ref().filter(|n| !n.is_empty()) else {
                    return Ok(());
                };
                let cost = bind
                    .parameters
                    .iter()
                    .map(|p| p.as_ref().map_or(0, |p| p.len()))
                    .fold(PORTAL_OVERHEAD, usize::saturating_add);
                admit(
                    &mut self.portals,
                    name,
                    cost,
                    (MAX_PORTALS, MAX_PORTAL_BYTES),
                    |n| store.get_portal(n).is_some(),
                    "portals",
                )
            }
            PgWireFrontendMessage::Close(close) => {
                if let Some(name) = &close.name {
                    match close.target_type {
                        TARGET_TYPE_BYTE_STATEMENT => self.statements.remove(name),
                        TARGET_TYPE_BYTE_PORTAL => self.portals.remove(name),
                        _ => None,
                    };
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn admit(
    held: &mut HashMap<String, usize>,
    name: &str,
    cost: usize,
    (max_count, max_bytes): (usize, usize),
    exists: impl Fn(&str) -> bool,
    what: &str,
) -> Result<(), PgWireError> {
    held.remove(name);
    // One object alone is always taken (a statement of up to the 4 MiB text limit counts
    // for more than the cap); the bytes cap bounds what is kept beside it.
    let over = |held: &HashMap<String, usize>| {
        held.len() >= max_count
            || (!held.is_empty() && held.values().sum::<usize>().saturating_add(cost) > max_bytes)
    };
    if over(held) {
        held.retain(|name, _| exists(name));
    }
    if over(held) {
        return Err(sqlstate::error(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!(
                "too many {what} in this session: at most {max_count} of about {} MiB \
                 together; close (deallocate) some first",
                max_bytes >> 20
            ),
        ));
    }
    held.insert(name.to_string(), cost);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_refuses_the_next_name_until_one_is_gone() {
        let mut held = HashMap::new();
        let live = std::cell::RefCell::new(std::collections::HashSet::new());
        for i in 0..3 {
            let name = format!("s{i}");
            admit(
                &mut held,
                &name,
                10,
                (3, 1000),
                |n| live.borrow().contains(n),
                "x",
            )
            .expect("under the cap");
            live.borrow_mut().insert(name);
        }
        assert!(
            admit(
                &mut held,
                "s3",
                10,
                (3, 1000),
                |n| live.borrow().contains(n),
                "x"
            )
            .is_err()
        );
        // Replacing a held name is no new object.
        assert!(
            admit(
                &mut held,
                "s1",
                10,
                (3, 1000),
                |n| live.borrow().contains(n),
                "x"
            )
            .is_ok()
        );
        // Gone from the store (closed at the end of a block): pruned, room again.
        live.borrow_mut().remove("s0");
        assert!(
            admit(
                &mut held,
                "s3",
                10,
                (3, 1000),
                |n| live.borrow().contains(n),
                "x"
            )
            .is_ok()
        );
        // Bytes count as well as names; one object alone is always taken.
        assert!(admit(&mut held, "big", 2000, (10, 1000), |_| true, "x").is_err());
        assert!(admit(&mut HashMap::new(), "big", 2000, (10, 1000), |_| true, "x").is_ok());
    }
}
