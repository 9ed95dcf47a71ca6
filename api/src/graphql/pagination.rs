//! Relay connections over lists ordered by id (UUIDv7: creation order).

use async_graphql::OutputType;
use async_graphql::connection::{Connection, Edge};
use base64::Engine;
use uuid::Uuid;

use super::errors::{BAD_USER_INPUT, coded};

/// Page size when `first` is not given, and the most one page may hold.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 100;

pub fn cursor(id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_string())
}

/// The id inside an `after` cursor.
///
/// # Errors
/// BAD_USER_INPUT for a cursor this server did not make.
pub fn decode(cursor: &str) -> async_graphql::Result<Uuid> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| Uuid::parse_str(&s).ok())
        .ok_or_else(|| coded(BAD_USER_INPUT, format!("{cursor:?} is not a cursor of this list")))
}

/// The page size `first` asks for.
///
/// # Errors
/// BAD_USER_INPUT outside 0..=MAX_PAGE.
pub fn page_size(first: Option<i32>) -> async_graphql::Result<usize> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (0..=MAX_PAGE as i32).contains(&n) => Ok(n as usize),
        Some(n) => Err(coded(BAD_USER_INPUT, format!("first must be between 0 and {MAX_PAGE}, not {n}"))),
    }
}

/// One page of `items` (sorted by id) after the cursor `after`.
///
/// # Errors
/// BAD_USER_INPUT for a bad `first` or `after`.
pub fn page<T: OutputType>(
    mut items: Vec<(Uuid, T)>,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<Connection<String, T>> {
    let size = page_size(first)?;
    items.sort_by_key(|(id, _)| *id);
    let after = after.as_deref().map(decode).transpose()?;
    let skipped = after.map_or(0, |a| items.iter().take_while(|(id, _)| *id <= a).count());
    let rest: Vec<(Uuid, T)> = items.into_iter().skip(skipped).collect();
    let has_next = rest.len() > size;
    let mut connection = Connection::new(skipped > 0, has_next);
    connection.edges.extend(rest.into_iter().take(size).map(|(id, node)| Edge::new(cursor(id), node)));
    Ok(connection)
}

/// A connection's complexity: its page size times what each node asks for.
pub fn weight(first: Option<i32>, child_complexity: usize) -> usize {
    first.map_or(DEFAULT_PAGE, |f| f.clamp(0, MAX_PAGE as i32) as usize).max(1) * child_complexity
}
