//! The one place where janus failures become etcd's gRPC statuses.
//!
//! etcd clients match on the exact `etcdserver: ...` message (clientv3's
//! `rpctypes.ErrorDesc` → typed errors, etcdctl prints it verbatim), so codes
//! and texts are copied from etcd 3.4's `api/v3rpc/rpctypes/error.go`.

use janus_core::auth::AuthError;
use janus_core::{CoreError, KvError, MembershipError};
use tonic::{Code, Status};

/// Everything a handler can fail with, before it is put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// An answer of core's state machine or read path.
    Kv(KvError),
    /// The node failed or refused (stopped, timeout, not leader, storage).
    Core(String, CoreKind),
    /// `etcdserver: request is too large` (frontend size check).
    RequestTooLarge,
    /// `etcdserver: key not found`: a txn `RequestOp` with no request set.
    KeyNotFound,
    /// `etcdserver: no leader`
    NoLeader,
    /// `etcdserver: not leader`
    NotLeader,
    /// `etcdserver: member not found`
    MemberNotFound,
    /// `etcdserver: Peer URLs already exists`
    MemberPeerUrlExists,
    /// `etcdserver: given member URLs are invalid`
    MemberBadUrls,
    /// `etcdserver: can only promote a learner member`
    MemberNotLearner,
    /// `etcdserver: re-configuration failed due to not enough started members`
    MemberNotEnoughStarted,
    /// `etcdserver: bad leader transferee`
    BadLeaderTransferee,
    /// Refused by the auth store (credentials, permissions, users, roles).
    Auth(AuthError),
    /// Something janus does not implement (yet); gRPC Unimplemented.
    Unimplemented(&'static str),
    /// An error of etcd's lock and election services, which etcd returns
    /// as plain Go errors: code Unknown, the text as it is
    /// (`election: not leader`, ...).
    Concurrency(String),
}

/// Which [`CoreError`] it was, kept apart from its text so the mapping is
/// total and `ApiError` stays `Clone + Eq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreKind {
    Stopped,
    Timeout,
    NotLeader,
    Other,
}

impl From<KvError> for ApiError {
    fn from(e: KvError) -> Self {
        ApiError::Kv(e)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::Auth(e)
    }
}

/// etcd's `togRPCError` for auth errors (`rpctypes.ErrGRPC*`); an error
/// etcd has no mapping for (no-password user) keeps its text, code Unknown.
fn auth_code_and_message(e: &AuthError) -> (Code, &'static str) {
    use Code::*;
    match e {
        AuthError::RootUserNotExist => (FailedPrecondition, "etcdserver: root user does not exist"),
        AuthError::RootRoleNotExist => (
            FailedPrecondition,
            "etcdserver: root user does not have root role",
        ),
        AuthError::UserAlreadyExist => (FailedPrecondition, "etcdserver: user name already exists"),
        AuthError::UserEmpty => (InvalidArgument, "etcdserver: user name is empty"),
        AuthError::UserNotFound => (FailedPrecondition, "etcdserver: user name not found"),
        AuthError::RoleAlreadyExist => (FailedPrecondition, "etcdserver: role name already exists"),
        AuthError::RoleNotFound => (FailedPrecondition, "etcdserver: role name not found"),
        AuthError::RoleEmpty => (InvalidArgument, "etcdserver: role name is empty"),
        AuthError::AuthFailed => (
            InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password",
        ),
        AuthError::NoPasswordUser => (
            Unknown,
            "auth: authentication failed, password was given for no password user",
        ),
        AuthError::PermissionDenied => (PermissionDenied, "etcdserver: permission denied"),
        AuthError::RoleNotGranted => (
            FailedPrecondition,
            "etcdserver: role is not granted to the user",
        ),
        AuthError::PermissionNotGranted => (
            FailedPrecondition,
            "etcdserver: permission is not granted to the role",
        ),
        AuthError::AuthNotEnabled => (
            FailedPrecondition,
            "etcdserver: authentication is not enabled",
        ),
        AuthError::InvalidAuthToken => (Unauthenticated, "etcdserver: invalid auth token"),
        AuthError::InvalidAuthMgmt => (InvalidArgument, "etcdserver: invalid auth management"),
        AuthError::AuthOldRevision => {
            (InvalidArgument, "etcdserver: revision of auth store is old")
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Membership(MembershipError::NotFound) => return ApiError::MemberNotFound,
            CoreError::Membership(MembershipError::NotLearner) => {
                return ApiError::MemberNotLearner
            }
            CoreError::Membership(MembershipError::PeerUrlExists) => {
                return ApiError::MemberPeerUrlExists
            }
            _ => {}
        }
        let kind = match e {
            CoreError::Stopped => CoreKind::Stopped,
            CoreError::Timeout => CoreKind::Timeout,
            CoreError::NotLeader => CoreKind::NotLeader,
            _ => CoreKind::Other,
        };
        ApiError::Core(e.to_string(), kind)
    }
}

impl ApiError {
    /// gRPC code and message, exactly as etcd sends them.
    pub fn code_and_message(&self) -> (Code, String) {
        use Code::*;
        let (code, msg): (Code, &str) = match self {
            ApiError::Kv(e) => match e {
                KvError::Compacted { .. } => (
                    OutOfRange,
                    "etcdserver: mvcc: required revision has been compacted",
                ),
                KvError::FutureRevision => (
                    OutOfRange,
                    "etcdserver: mvcc: required revision is a future revision",
                ),
                KvError::LeaseNotFound => (NotFound, "etcdserver: requested lease not found"),
                KvError::LeaseExists => (FailedPrecondition, "etcdserver: lease already exists"),
                KvError::LeaseTtlTooLarge => (OutOfRange, "etcdserver: too large lease TTL"),
                KvError::EmptyKey => (InvalidArgument, "etcdserver: key is not provided"),
                KvError::ValueProvided => (InvalidArgument, "etcdserver: value is provided"),
                KvError::LeaseProvided => (InvalidArgument, "etcdserver: lease is provided"),
                KvError::DuplicateKey => (
                    InvalidArgument,
                    "etcdserver: duplicate key given in txn request",
                ),
                KvError::TooManyOps => (
                    InvalidArgument,
                    "etcdserver: too many operations in txn request",
                ),
                KvError::NoSpace => (
                    ResourceExhausted,
                    "etcdserver: mvcc: database space exceeded",
                ),
                KvError::Corrupt => (DataLoss, "etcdserver: corrupt cluster"),
                KvError::KeyNotFound => (InvalidArgument, "etcdserver: key not found"),
                KvError::MigrationInProgress => (
                    Unavailable,
                    "etcdserver: migration in progress: writes are refused until it ends",
                ),
                KvError::Auth(e) => auth_code_and_message(e),
                // etcd's togRPCError: errors it has no mapping for keep
                // their text, code Unknown.
                KvError::Internal(text) => return (Unknown, text.clone()),
            },
            ApiError::Core(text, kind) => match kind {
                CoreKind::Stopped => (Unavailable, "etcdserver: server stopped"),
                CoreKind::Timeout => (Unavailable, "etcdserver: request timed out"),
                CoreKind::NotLeader => (FailedPrecondition, "etcdserver: not leader"),
                // etcd's togRPCError: unknown errors keep their text, code Unknown.
                CoreKind::Other => return (Unknown, text.clone()),
            },
            ApiError::RequestTooLarge => (InvalidArgument, "etcdserver: request is too large"),
            ApiError::KeyNotFound => (InvalidArgument, "etcdserver: key not found"),
            ApiError::NoLeader => (Unavailable, "etcdserver: no leader"),
            ApiError::NotLeader => (FailedPrecondition, "etcdserver: not leader"),
            ApiError::MemberNotFound => (NotFound, "etcdserver: member not found"),
            ApiError::MemberPeerUrlExists => {
                (FailedPrecondition, "etcdserver: Peer URLs already exists")
            }
            ApiError::MemberBadUrls => {
                (InvalidArgument, "etcdserver: given member URLs are invalid")
            }
            ApiError::MemberNotLearner => (
                FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ),
            ApiError::MemberNotEnoughStarted => (
                FailedPrecondition,
                "etcdserver: re-configuration failed due to not enough started members",
            ),
            ApiError::BadLeaderTransferee => {
                (FailedPrecondition, "etcdserver: bad leader transferee")
            }
            ApiError::Auth(e) => auth_code_and_message(e),
            ApiError::Concurrency(text) => return (Unknown, text.clone()),
            ApiError::Unimplemented(what) => {
                return (Unimplemented, format!("janus: {what} is not implemented"))
            }
        };
        (code, msg.to_string())
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let (code, msg) = e.code_and_message();
        Status::new(code, msg)
    }
}

/// HTTP status grpc-gateway (v1, as vendored by etcd 3.4) uses for a gRPC code.
pub fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode as H;
    match code {
        Code::Ok => H::OK,
        Code::Cancelled => H::REQUEST_TIMEOUT,
        Code::Unknown => H::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => H::BAD_REQUEST,
        Code::DeadlineExceeded => H::GATEWAY_TIMEOUT,
        Code::NotFound => H::NOT_FOUND,
        Code::AlreadyExists => H::CONFLICT,
        Code::PermissionDenied => H::FORBIDDEN,
        Code::Unauthenticated => H::UNAUTHORIZED,
        Code::ResourceExhausted => H::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => H::BAD_REQUEST,
        Code::Aborted => H::CONFLICT,
        Code::OutOfRange => H::BAD_REQUEST,
        Code::Unimplemented => H::NOT_IMPLEMENTED,
        Code::Internal => H::INTERNAL_SERVER_ERROR,
        Code::Unavailable => H::SERVICE_UNAVAILABLE,
        Code::DataLoss => H::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_errors_carry_etcd_codes_and_texts() {
        let cases = [
            (
                KvError::Compacted {
                    compact_revision: 3,
                },
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                KvError::FutureRevision,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                KvError::LeaseNotFound,
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                KvError::EmptyKey,
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                KvError::DuplicateKey,
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                KvError::TooManyOps,
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                KvError::NoSpace,
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
        ];
        for (e, code, msg) in cases {
            let s = Status::from(ApiError::from(e));
            assert_eq!(s.code(), code);
            assert_eq!(s.message(), msg);
        }
    }

    #[test]
    fn core_errors_map_like_etcd_server_errors() {
        let s = Status::from(ApiError::from(CoreError::Timeout));
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unavailable, "etcdserver: request timed out")
        );
        let s = Status::from(ApiError::from(CoreError::Stopped));
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unavailable, "etcdserver: server stopped")
        );
        let s = Status::from(ApiError::from(CoreError::Raft("x".into())));
        assert_eq!((s.code(), s.message()), (Code::Unknown, "raft: x"));
    }

    #[test]
    fn frontend_errors() {
        let s = Status::from(ApiError::RequestTooLarge);
        assert_eq!(
            (s.code(), s.message()),
            (Code::InvalidArgument, "etcdserver: request is too large")
        );
        assert_eq!(http_status(Code::NotFound), http::StatusCode::NOT_FOUND);
    }
}
