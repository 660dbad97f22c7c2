//! TCP_CHECK: the server accepts a TCP connection within
//! `connect_timeout` (keepalived closes it at once; so do we).

use super::{connect_tcp, Outcome};
use crate::health::spec::CheckTarget;

pub async fn check(target: &CheckTarget) -> Outcome {
    let stream = connect_tcp(target).await?;
    drop(stream);
    Ok(None)
}
