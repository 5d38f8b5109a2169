//! The generated clients talking to the generated servers in-process (the
//! server is a tower service, the client is generic over one): one call of
//! each shape — unary, client streaming, server streaming, bidirectional.

use bytes::Bytes;
use quicmq_proto::cluster::v1::{
    admin_client::AdminClient,
    admin_server::{Admin, AdminServer},
    cluster_watch_client::ClusterWatchClient,
    cluster_watch_server::{ClusterWatch, ClusterWatchServer},
    forward_client::ForwardClient,
    forward_request, forward_response,
    forward_server::{Forward, ForwardServer},
    raft_client::RaftClient,
    raft_response,
    raft_server::{Raft, RaftServer},
    snapshot_chunk, watch_event, BarrierRequest, BarrierResponse, ClusterSnapshot, ClusterUpdate,
    ForwardAck, ForwardBatch, ForwardHello, ForwardRequest, ForwardResponse, ForwardWelcome,
    ForwardedPublish, JoinRequest, JoinResponse, LeaveRequest, LeaveResponse, Member, PingRequest,
    PingResponse, RaftRequest, RaftResponse, SnapshotChunk, SnapshotHeader, SnapshotTrailer,
    StatusRequest, StatusResponse, WatchEvent, WatchRequest,
};
use tonic::codegen::tokio_stream::{self, Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

type BoxStream<T> = std::pin::Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

struct Node;

#[tonic::async_trait]
impl Raft for Node {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        let payload = request.into_inner().payload;
        Ok(Response::new(RaftResponse {
            outcome: Some(raft_response::Outcome::Ok(payload)),
        }))
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        let header = request.into_inner().header.unwrap_or_default();
        if header.to_node_id != 1 {
            return Err(Status::failed_precondition("not node 1"));
        }
        Ok(Response::new(RaftResponse {
            outcome: Some(raft_response::Outcome::Error(Bytes::from_static(b"no"))),
        }))
    }

    async fn install_snapshot(
        &self,
        _request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        Err(Status::unimplemented("chunked snapshots"))
    }

    async fn stream_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftResponse>, Status> {
        let mut stream = request.into_inner();
        let mut data = Vec::new();
        let mut header = None;
        while let Some(chunk) = stream.message().await? {
            match chunk.frame {
                Some(snapshot_chunk::Frame::Header(h)) => header = Some(h),
                Some(snapshot_chunk::Frame::Data(d)) => data.extend_from_slice(&d),
                Some(snapshot_chunk::Frame::Trailer(_)) => break,
                None => return Err(Status::invalid_argument("empty frame")),
            }
        }
        let header = header.ok_or_else(|| Status::invalid_argument("no header"))?;
        assert_eq!(header.total_len, data.len() as u64);
        Ok(Response::new(RaftResponse {
            outcome: Some(raft_response::Outcome::Ok(Bytes::from(data))),
        }))
    }

    async fn client_write(
        &self,
        _request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        Err(Status::unavailable("no leader"))
    }

    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(PingResponse {
            applied_index: request.wait_index,
        }))
    }
}

#[tonic::async_trait]
impl Forward for Node {
    type OpenStream = BoxStream<ForwardResponse>;

    async fn open(
        &self,
        request: Request<Streaming<ForwardRequest>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let stream = request.into_inner().map(|frame| {
            let frame = match frame?.frame {
                Some(forward_request::Frame::Hello(hello)) => {
                    forward_response::Frame::Welcome(ForwardWelcome {
                        node_id: hello.to_node_id,
                        last_seq: 0,
                        incarnation: 1,
                    })
                }
                Some(forward_request::Frame::Batch(batch)) => {
                    forward_response::Frame::Ack(ForwardAck {
                        seq: batch.seq,
                        incomplete: false,
                    })
                }
                None => return Err(Status::invalid_argument("empty frame")),
            };
            Ok(ForwardResponse { frame: Some(frame) })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn barrier(
        &self,
        request: Request<BarrierRequest>,
    ) -> Result<Response<BarrierResponse>, Status> {
        let index = request.into_inner().index;
        Ok(Response::new(BarrierResponse {
            routed_index: index,
            reached: true,
        }))
    }
}

#[tonic::async_trait]
impl ClusterWatch for Node {
    type WatchStream = BoxStream<WatchEvent>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let from = request.into_inner().after_revision;
        let events = vec![
            Ok(WatchEvent {
                revision: from + 1,
                event: Some(watch_event::Event::Snapshot(ClusterSnapshot {
                    cluster_id: "c-1".into(),
                    leader_node_id: 1,
                    ..Default::default()
                })),
            }),
            Ok(WatchEvent {
                revision: from + 2,
                event: Some(watch_event::Event::Update(ClusterUpdate {
                    removed_node_ids: vec![2],
                    ..Default::default()
                })),
            }),
        ];
        Ok(Response::new(Box::pin(tokio_stream::iter(events))))
    }
}

#[tonic::async_trait]
impl Admin for Node {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let join = request.into_inner();
        if join.cluster_id != "c-1" {
            return Err(Status::failed_precondition("other cluster"));
        }
        Ok(Response::new(JoinResponse {
            cluster_id: join.cluster_id,
            member: Some(Member {
                node_id: join.node_id,
                server_id: Bytes::from_static(&[0, 4]),
                ..Default::default()
            }),
            leader_node_id: 1,
            members: vec![],
        }))
    }

    async fn leave(
        &self,
        request: Request<LeaveRequest>,
    ) -> Result<Response<LeaveResponse>, Status> {
        Ok(Response::new(LeaveResponse {
            node_id: request.into_inner().node_id.unwrap_or(1),
            state: 0,
        }))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(StatusResponse {
            node_id: 1,
            term: 3,
            ..Default::default()
        }))
    }
}

#[tokio::test]
async fn unary_raft_and_admin() {
    let mut raft = RaftClient::new(RaftServer::new(Node));
    let payload = Bytes::from_static(b"append entries");
    let response = raft
        .append_entries(RaftRequest {
            header: None,
            payload: payload.clone(),
        })
        .await
        .expect("append entries")
        .into_inner();
    assert_eq!(response.outcome, Some(raft_response::Outcome::Ok(payload)));

    let status = raft
        .vote(RaftRequest::default())
        .await
        .expect_err("wrong receiver is refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);

    let pong = raft
        .ping(PingRequest {
            header: None,
            wait_index: 42,
            timeout_ms: 10,
        })
        .await
        .expect("ping")
        .into_inner();
    assert_eq!(pong.applied_index, 42);

    let mut admin = AdminClient::new(AdminServer::new(Node));
    let joined = admin
        .join(JoinRequest {
            cluster_id: "c-1".into(),
            node_id: 4,
            ..Default::default()
        })
        .await
        .expect("join")
        .into_inner();
    assert_eq!(joined.member.expect("member").node_id, 4);
    let refused = admin
        .join(JoinRequest {
            cluster_id: "other".into(),
            node_id: 4,
            ..Default::default()
        })
        .await
        .expect_err("other cluster");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    let left = admin
        .leave(LeaveRequest {
            node_id: Some(3),
            ..Default::default()
        })
        .await
        .expect("leave")
        .into_inner();
    assert_eq!(left.node_id, 3);
    assert_eq!(
        admin
            .status(StatusRequest::default())
            .await
            .expect("status")
            .into_inner()
            .term,
        3
    );
}

#[tokio::test]
async fn client_streaming_snapshot() {
    let mut raft = RaftClient::new(RaftServer::new(Node));
    let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let mut frames = vec![SnapshotChunk {
        frame: Some(snapshot_chunk::Frame::Header(SnapshotHeader {
            header: None,
            vote: Bytes::from_static(b"vote"),
            meta: Bytes::from_static(b"meta"),
            total_len: data.len() as u64,
        })),
    }];
    frames.extend(data.chunks(64 * 1024).map(|c| SnapshotChunk {
        frame: Some(snapshot_chunk::Frame::Data(Bytes::copy_from_slice(c))),
    }));
    frames.push(SnapshotChunk {
        frame: Some(snapshot_chunk::Frame::Trailer(SnapshotTrailer {
            crc32c: 0,
        })),
    });
    let response = raft
        .stream_snapshot(tokio_stream::iter(frames))
        .await
        .expect("snapshot")
        .into_inner();
    assert_eq!(
        response.outcome,
        Some(raft_response::Outcome::Ok(Bytes::from(data)))
    );
}

#[tokio::test]
async fn server_streaming_watch() {
    let mut watch = ClusterWatchClient::new(ClusterWatchServer::new(Node));
    let mut events = watch
        .watch(WatchRequest {
            after_revision: 10,
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let first = events.message().await.expect("event").expect("some");
    assert_eq!(first.revision, 11);
    assert!(matches!(first.event, Some(watch_event::Event::Snapshot(_))));
    let second = events.message().await.expect("event").expect("some");
    assert_eq!(second.revision, 12);
    assert!(matches!(second.event, Some(watch_event::Event::Update(_))));
    assert!(events.message().await.expect("clean end").is_none());
}

#[tokio::test]
async fn bidirectional_forwarding() {
    let mut forward = ForwardClient::new(ForwardServer::new(Node));
    let mut frames = vec![ForwardRequest {
        frame: Some(forward_request::Frame::Hello(ForwardHello {
            cluster_id: "c-1".into(),
            from_node_id: 2,
            to_node_id: 1,
            incarnation: 99,
        })),
    }];
    frames.extend((1..=3).map(|seq| ForwardRequest {
        frame: Some(forward_request::Frame::Batch(ForwardBatch {
            seq,
            publishes: vec![ForwardedPublish {
                topic: "a/b".into(),
                payload: Bytes::from_static(b"x"),
                origin_node_id: 2,
                ..Default::default()
            }],
        })),
    }));
    let responses: Vec<ForwardResponse> = forward
        .open(tokio_stream::iter(frames))
        .await
        .expect("open")
        .into_inner()
        .map(|r| r.expect("frame"))
        .collect()
        .await;
    let expected: Vec<ForwardResponse> =
        std::iter::once(forward_response::Frame::Welcome(ForwardWelcome {
            node_id: 1,
            last_seq: 0,
            incarnation: 1,
        }))
        .chain((1..=3).map(|seq| {
            forward_response::Frame::Ack(ForwardAck {
                seq,
                incomplete: false,
            })
        }))
        .map(|frame| ForwardResponse { frame: Some(frame) })
        .collect();
    assert_eq!(responses, expected);
}
