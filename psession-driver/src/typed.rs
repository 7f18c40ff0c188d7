//! Typed helpers: serialize a request with serde, deserialize the reply.

use psession_core::{Cause, SessionError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::port::{AsPort, Port};
use crate::runtime::Runtime;
use crate::session::Session;
use crate::SessionManager;

fn encode<T: Serialize>(value: &T) -> Result<Value, SessionError> {
    serde_json::to_value(value).map_err(|e| SessionError::Codec(Cause::new(e)))
}

fn decode<T: DeserializeOwned>(value: Value) -> Result<T, SessionError> {
    serde_json::from_value(value).map_err(|e| SessionError::Codec(Cause::new(e)))
}

impl Session<Value> {
    /// Sends a typed request and decodes the typed reply. The request must
    /// serialize to a JSON object (it gets the sid field); the reply's sid
    /// field is ignored unless `Resp` asks for it. Encoding or decoding
    /// failures are [`SessionError::Codec`].
    ///
    /// ```no_run
    /// # async fn demo(mut session: psession_driver::Session<serde_json::Value>)
    /// #     -> Result<(), psession_core::SessionError> {
    /// #[derive(serde::Serialize)]
    /// struct GetTime { command: &'static str }
    /// #[derive(serde::Deserialize)]
    /// struct Time { time: String }
    ///
    /// let reply: Time = session.send_json(&GetTime { command: "getTime" }).await?;
    /// println!("{}", reply.time);
    /// # Ok(()) }
    /// ```
    pub async fn send_json<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        request: &Req,
    ) -> Result<Resp, SessionError> {
        decode(self.send(encode(request)?).await?)
    }

    /// The next message on this session, decoded.
    pub async fn recv_json<T: DeserializeOwned>(&mut self) -> Result<T, SessionError> {
        decode(self.recv().await?)
    }

    /// Posts a typed message (no answer awaited).
    pub async fn post_json<T: Serialize>(&self, message: &T) -> Result<(), SessionError> {
        self.post(encode(message)?).await
    }
}

impl Port<Value> {
    /// A typed one-shot request: open, send, decode the reply, end.
    pub async fn request_json<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        request: &Req,
    ) -> Result<Resp, SessionError> {
        decode(self.request(encode(request)?).await?)
    }
}

impl<R: Runtime> SessionManager<R, Value> {
    /// A typed one-shot request on `port`: open, send, decode the reply, end.
    pub async fn request_json<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        port: impl AsPort,
        request: &Req,
    ) -> Result<Resp, SessionError> {
        decode(self.request(port, encode(request)?).await?)
    }
}
