//! How `http` connects to the SQS endpoint: directly, or through the HTTP proxy the
//! environment names for it (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`), as the AWS SDK does for
//! masq's other calls, so no SQS call goes around a proxy an operator set.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;

/// How connections to the endpoint are made: directly, or through the HTTP proxy that
/// `HTTPS_PROXY`/`HTTP_PROXY` (and `NO_PROXY`) name for it, as the AWS SDK does for masq's other
/// calls. Through a proxy, the connection is a CONNECT tunnel; TLS then runs inside it.
#[derive(Clone)]
pub enum Dial {
    Direct(HttpConnector),
    Tunnel(Tunnel<HttpConnector>),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Dial {
    pub fn for_endpoint(endpoint: &http::Uri, http: HttpConnector) -> Dial {
        match Matcher::from_env().intercept(endpoint) {
            Some(proxy) => {
                // The proxy's address only: its credentials never reach a log.
                tracing::info!(
                    proxy = %proxy.uri().authority().map(|a| a.host()).unwrap_or("?"),
                    "SQS calls go through the HTTP proxy from the environment"
                );
                let mut tunnel = Tunnel::new(proxy.uri().clone(), http);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Dial::Tunnel(tunnel)
            }
            None => Dial::Direct(http),
        }
    }
}

impl tower_service::Service<http::Uri> for Dial {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        match self {
            Dial::Direct(c) => c.poll_ready(cx).map_err(Into::into),
            Dial::Tunnel(c) => c.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        match self {
            Dial::Direct(c) => {
                let f = c.call(dst);
                Box::pin(async move { f.await.map_err(Into::into) })
            }
            Dial::Tunnel(c) => {
                let f = c.call(dst);
                Box::pin(async move { f.await.map_err(Into::into) })
            }
        }
    }
}
