// Package transport carries raft messages and snapshots between the
// members of a synod cluster over plain TCP.
//
// The server hands every outgoing message to Transport.Send and receives
// incoming ones through its Handler. Send never blocks: each peer has a
// bounded queue drained by its own writer goroutine, so a slow or dead
// member never holds up the others, and a message that cannot be queued is
// dropped and reported through Handler.ReportUnreachable, which makes raft
// probe the follower again instead of streaming into the void. Raft
// tolerates lost, duplicated and reordered messages; the transport only
// promises that the messages of one stream that do arrive, arrive in the
// order they were sent.
//
// # Connections
//
// Every member dials one long-lived message stream to each peer it knows
// (AddPeer) and accepts the streams the others dial to it (Serve), so each
// pair of members shares two TCP connections, one per direction. The
// writer encodes everything queued for a peer into one buffer and writes it
// with one system call (batching), and never waits for an answer before the
// next write (pipelining); answers come back on the other member's stream.
// A stream that fails is redialled with exponential backoff (50ms doubling
// to 2s, with jitter). ActiveSince tells since when a peer's stream has
// been up, which the server uses to judge which members are alive.
//
// Each snapshot travels on a connection of its own so that its data, which
// may be large, never delays heartbeats and appends. At most one snapshot
// per peer is in flight; TCP flow control paces it to the speed the
// receiver consumes it.
//
// Both sides detect dead connections: the dialer of a message stream sends
// a keepalive frame whenever it has been quiet for a while and the acceptor
// sends keepalives back, and a side that hears nothing for
// Config.IdleTimeout closes the connection. A write that cannot complete
// within IdleTimeout (a member that stopped reading) also closes it.
//
// # Wire format
//
// All integers are big-endian. CRC32C is CRC-32 with the Castagnoli
// polynomial (hash/crc32.Castagnoli). Peer URLs are http://host:port; only
// host and port are used, and no HTTP is spoken.
//
// A connection starts with a handshake request from the dialer (42 bytes):
//
//	offset size field
//	0      8    magic "SYNODNET"
//	8      1    protocol version, 2
//	9      1    kind: 1 message stream, 2 snapshot, 3 cluster info
//	10     8    cluster ID of the dialer (0 only for cluster info: unknown)
//	18     8    member ID of the dialer
//	26     8    member ID the dialer means to reach (0 only for cluster info)
//	34     4    keepalive interval in milliseconds the dialer asks for
//	38     4    CRC32C of bytes [0, 38)
//
// The acceptor answers (36+r bytes):
//
//	0      8    magic "SYNODNET"
//	8      1    protocol version of the acceptor
//	9      1    code: 0 accepted, 1 unsupported version, 2 unknown kind,
//	            3 cluster ID mismatch, 4 wrong member ID, 5 dialer was
//	            removed from the cluster, 6 invalid dialer ID, 7 shutting down
//	10     8    cluster ID of the acceptor
//	18     8    member ID of the acceptor
//	26     4    keepalive interval in milliseconds the acceptor asks for
//	30     2    reason length r, at most 1024
//	32     r    reason, UTF-8 text for the dialer's log (empty when accepted)
//	32+r   4    CRC32C of bytes [0, 32+r)
//
// Each side asks for keepalives at a quarter of its own IdleTimeout (at
// most 1s), so members with different timeouts still agree; requests are
// clamped to [10ms, 10s].
//
// The acceptor refuses, logs and closes a connection from another cluster,
// one addressed to another member ID, and one from a member that was
// removed (Handler.IsRemoved). After an acceptance both sides exchange
// frames:
//
//	0      1    frame type
//	1      4    payload length n; at most Config.MaxFrameBytes
//	5      4    CRC32C of the type byte followed by the payload
//	9      n    payload
//
// Frame types and where they may appear:
//
//	1 message        raftpb.AppendMessage encoding of one raftpb.Message
//	                 (dialer to acceptor, message streams and snapshots)
//	2 keepalive      empty (both ways on message streams)
//	3 snapshot chunk up to 1 MiB of snapshot data
//	4 snapshot end   8 bytes: the number of data bytes sent in chunks
//	5 snapshot ack   1 byte status (0 installed, 1 refused), then the
//	                 receiver's reason as UTF-8 text
//	6 cluster info   the bytes of the acceptor's Handler.ClusterInfo
//
// A message stream carries message and keepalive frames from the dialer
// and keepalive frames from the acceptor. Every message must name the
// dialer as From and the acceptor as To, must not be a local type, and must
// not be MsgSnap. A snapshot connection carries one MsgSnap message frame
// whose snapshot has metadata but no inline data, then the data as chunk
// frames, then an end frame; the acceptor answers with one ack frame once
// Handler.ReceiveSnapshot and Handler.Process have returned, and may answer
// a refusal early, which aborts the transfer. A cluster info connection
// carries one cluster info frame from the acceptor.
//
// A frame of an unknown type or in the wrong place, a length over the
// limit, a checksum mismatch, a message that does not decode or does not
// match the handshake: each is a protocol error, which is logged with the
// remote member's ID and address and closes the connection. No input
// panics the process; readers allocate at most 1 MiB beyond the bytes that
// actually arrived.
package transport
