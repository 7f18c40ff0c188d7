//! What psession needs from a message: reading and writing its session id.

use serde_json::{Map, Value};

/// A message that can carry a session id (sid).
///
/// psession never looks inside a message except through this trait, so any
/// protocol can use it: JSON objects ([`serde_json::Value`], built in), or a
/// binary frame with a sid in its header. `field` is the configured field
/// name (`"sid"` unless `session_id_name` says otherwise); a binary protocol
/// may ignore it.
///
/// `Clone` is only used when a send has retries: the core then keeps one
/// copy to transmit again.
///
/// ```
/// use psession_core::Message;
///
/// #[derive(Clone)]
/// struct Frame { sid: u32, body: Vec<u8> }
///
/// impl Message for Frame {
///     fn sid(&self, _field: &str) -> Option<u32> {
///         (self.sid != 0).then_some(self.sid)
///     }
///     fn set_sid(&mut self, _field: &str, sid: u32) -> bool {
///         self.sid = sid;
///         true
///     }
/// }
///
/// let mut frame = Frame { sid: 0, body: b"ping".to_vec() };
/// assert_eq!(frame.sid("sid"), None);
/// assert!(frame.set_sid("sid", 7));
/// assert_eq!(frame.sid("sid"), Some(7));
/// ```
pub trait Message: Clone {
    /// The session id this message carries, if it is a session message.
    ///
    /// Must return `None` (never panic) for anything that is not a valid sid;
    /// `Some(0)` is treated as `None`.
    fn sid(&self, field: &str) -> Option<u32>;

    /// Writes `sid` into the message, replacing any value already there.
    /// Returns `false` if this message cannot carry a sid.
    fn set_sid(&mut self, field: &str, sid: u32) -> bool;
}

/// JSON messages: a session message is an object whose `field` holds a
/// positive integer that fits in `u32`.
///
/// Absent fields, strings, `0`, negative or fractional numbers, numbers out
/// of range, and non-objects are not session messages. An integral float
/// such as `7.0` counts as `7`, as it does for a JavaScript peer.
///
/// ```
/// use psession_core::Message;
/// use serde_json::json;
///
/// assert_eq!(json!({"sid": 7}).sid("sid"), Some(7));
/// assert_eq!(json!({"sid": 7.0}).sid("sid"), Some(7));
/// assert_eq!(json!({"sid": 7.5}).sid("sid"), None);
/// assert_eq!(json!({"sid": -1}).sid("sid"), None);
/// assert_eq!(json!({"sid": "7"}).sid("sid"), None);
/// assert_eq!(json!([7]).sid("sid"), None);
///
/// let mut msg = json!({"sid": 99, "cmd": "on"});
/// assert!(msg.set_sid("sid", 3));
/// assert_eq!(msg, json!({"sid": 3, "cmd": "on"}));
/// assert!(!json!("text").set_sid("sid", 3));
/// ```
impl Message for Value {
    fn sid(&self, field: &str) -> Option<u32> {
        let number = match self.as_object()?.get(field)? {
            Value::Number(number) => number,
            _ => return None,
        };
        let sid = match number.as_u64() {
            Some(n) => n,
            None => {
                let f = number.as_f64()?;
                if f.fract() != 0.0 || !(1.0..=u32::MAX as f64).contains(&f) {
                    return None;
                }
                f as u64
            }
        };
        u32::try_from(sid).ok().filter(|&sid| sid != 0)
    }

    fn set_sid(&mut self, field: &str, sid: u32) -> bool {
        let Some(object) = self.as_object_mut() else {
            return false;
        };
        set_field(object, field, sid);
        true
    }
}

/// Writes `sid` under `field`: one search of the map. (Looking the field up
/// first would save the key's allocation only when the field is already
/// there, which a fresh request seldom has, for a second search always.)
fn set_field(object: &mut Map<String, Value>, field: &str, sid: u32) {
    object.insert(field.to_owned(), Value::from(sid));
}
