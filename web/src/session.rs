//! The API key of the signed-in user, kept in the tab's session storage:
//! gone when the tab closes, never in a URL.

const KEY: &str = "greenthread.key";

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

pub fn load() -> Option<String> {
    storage()?.get_item(KEY).ok()?.filter(|k| !k.is_empty())
}

pub fn save(key: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(KEY, key);
    }
}

pub fn clear() {
    if let Some(s) = storage() {
        let _ = s.remove_item(KEY);
    }
}
