//! What a failed SQS or S3 call says, in one short sentence for the log and the error chain:
//! the service's code and message, or the innermost cause of a failed connection (the SDK's
//! own Display is a page of debug output).

use super::http::CallError;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};

/// One short sentence for an SDK error.
pub fn short<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                _ => innermost(err),
            }
        }
        SdkError::TimeoutError(_) => "timed out".to_string(),
        other => innermost(other),
    }
}

fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// What a failed call says, from the SDK or from `http`.
pub(super) trait CallFailure {
    fn is_missing_queue(&self) -> bool;
    fn short(&self) -> String;
}

impl<E, R> CallFailure for SdkError<E, R>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    fn is_missing_queue(&self) -> bool {
        self.as_service_error()
            .and_then(|s| s.code())
            .is_some_and(|code| {
                code.contains("NonExistentQueue") || code.contains("QueueDoesNotExist")
            })
    }

    fn short(&self) -> String {
        short(self)
    }
}

impl CallFailure for CallError {
    fn is_missing_queue(&self) -> bool {
        CallError::is_missing_queue(self)
    }

    fn short(&self) -> String {
        self.to_string()
    }
}
