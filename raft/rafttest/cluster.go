package rafttest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"slices"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// Options configure every member of a Cluster.
type Options struct {
	// Seed drives the network's faults; each member's election timeouts are
	// seeded from it and the member ID.
	Seed          uint64
	ElectionTick  int // default 10
	HeartbeatTick int // default 1
	PreVote       bool
	CheckQuorum   bool
	ReadOnly      raft.ReadOnlyOption
	// Configure, if set, adjusts each member's config before it starts.
	Configure func(*raft.Config)
	// Logger receives the members' logs; nil discards them.
	Logger *slog.Logger
}

// Stage names a point in the handling of a Ready at which a simulated crash
// can happen.
type Stage int

// The stages, in the order a Ready is handled.
const (
	// StageSent: Messages were sent, nothing persisted.
	StageSent Stage = iota
	// StagePersisted: the Ready is durable, MessagesAfterPersist not sent.
	StagePersisted
	// StageApplied: committed entries applied, Advance not called.
	StageApplied
)

// Hooks let a test observe what members do.
type Hooks struct {
	// Ready is called with each Ready before it is handled.
	Ready func(id uint64, rd raft.Ready)
	// Applied is called after a member applies an entry; hash is its state
	// after the entry.
	Applied func(id uint64, e pb.Entry, hash uint64)
	// SnapshotApplied is called after a member installs a snapshot.
	SnapshotApplied func(id uint64, meta pb.SnapshotMetadata, hash uint64)
	// Crash, if set, is asked at each stage whether the member crashes there.
	Crash func(id uint64, stage Stage) bool
}

// Member is one simulated server: durable storage, the raft node, and a
// toy state machine (a hash chain of applied entries plus their data).
type Member struct {
	ID      uint64
	Storage *raft.MemoryStorage
	// Node is nil while the member is crashed.
	Node *raft.RawNode
	// ConfState is the configuration as of AppliedIndex.
	ConfState    pb.ConfState
	AppliedIndex uint64
	// Hash summarizes every entry applied so far (the state machine).
	Hash uint64
	// Data lists the non-empty normal entries applied, in order.
	Data [][]byte
	// ReadStates collects answers to ReadIndex requests made here.
	ReadStates []raft.ReadState

	config raft.Config
}

// Cluster is a set of members on a Network, driven step by step.
type Cluster struct {
	Net   *Network
	Hooks Hooks

	opts    Options
	members map[uint64]*Member
	ids     []uint64
}

// New returns a cluster of voters (and learners), all started from the same
// initial snapshot at index 1 that holds the configuration.
func New(opts Options, voters, learners []uint64) (*Cluster, error) {
	if opts.ElectionTick == 0 {
		opts.ElectionTick = 10
	}
	if opts.HeartbeatTick == 0 {
		opts.HeartbeatTick = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Cluster{Net: NewNetwork(opts.Seed), opts: opts, members: map[uint64]*Member{}}
	cs := pb.ConfState{Voters: slices.Clone(voters), Learners: slices.Clone(learners)}
	for _, id := range append(slices.Clone(voters), learners...) {
		st := raft.NewMemoryStorage()
		snap := pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 1, Term: 1, ConfState: cs}, Data: encodeState(0, nil)}
		if err := st.ApplySnapshot(snap); err != nil {
			return nil, err
		}
		if err := c.addMember(id, st); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// AddMember starts a member with empty storage, as a new server would
// before a conf change adds it; it learns everything from the leader.
func (c *Cluster) AddMember(id uint64) error {
	if _, ok := c.members[id]; ok {
		return fmt.Errorf("rafttest: member %d already exists", id)
	}
	return c.addMember(id, raft.NewMemoryStorage())
}

func (c *Cluster) addMember(id uint64, st *raft.MemoryStorage) error {
	m := &Member{ID: id, Storage: st}
	m.config = raft.Config{
		ID:                        id,
		ElectionTick:              c.opts.ElectionTick,
		HeartbeatTick:             c.opts.HeartbeatTick,
		Storage:                   st,
		MaxSizePerMsg:             1024,
		MaxInflightMsgs:           16,
		MaxUncommittedEntriesSize: 1 << 30,
		CheckQuorum:               c.opts.CheckQuorum,
		PreVote:                   c.opts.PreVote,
		ReadOnlyOption:            c.opts.ReadOnly,
		RandSeed:                  c.opts.Seed*1000003 + id,
		Logger:                    c.opts.Logger,
	}
	if c.opts.Configure != nil {
		c.opts.Configure(&m.config)
	}
	c.members[id] = m
	c.ids = append(c.ids, id)
	slices.Sort(c.ids)
	return c.start(m)
}

// start (re)creates the member's node from its storage, rebuilding the
// state machine from the stored snapshot as a real server would.
func (c *Cluster) start(m *Member) error {
	snap, err := m.Storage.Snapshot()
	if err != nil {
		return err
	}
	m.Hash, m.Data, m.AppliedIndex, m.ConfState = 0, nil, 0, pb.ConfState{}
	if !raft.IsEmptySnap(snap) {
		if m.Hash, m.Data, err = decodeState(snap.Data); err != nil {
			return err
		}
		m.AppliedIndex = snap.Metadata.Index
		m.ConfState = snap.Metadata.ConfState
	}
	m.ReadStates = nil
	cfg := m.config
	cfg.Applied = m.AppliedIndex
	m.Node, err = raft.NewRawNode(&cfg)
	return err
}

// IDs returns the member IDs in ascending order.
func (c *Cluster) IDs() []uint64 { return c.ids }

// Member returns the member with the given ID, or nil.
func (c *Cluster) Member(id uint64) *Member { return c.members[id] }

// Crash stops a member abruptly: whatever it had not persisted is lost.
func (c *Cluster) Crash(id uint64) { c.members[id].Node = nil }

// Restart restarts a crashed member from its storage.
func (c *Cluster) Restart(id uint64) error {
	m := c.members[id]
	if m.Node != nil {
		return fmt.Errorf("rafttest: member %d is running", id)
	}
	return c.start(m)
}

// Alive reports whether the member is running.
func (c *Cluster) Alive(id uint64) bool { m := c.members[id]; return m != nil && m.Node != nil }

// Tick ticks one member.
func (c *Cluster) Tick(id uint64) {
	if m := c.members[id]; m != nil && m.Node != nil {
		m.Node.Tick()
	}
}

// TickAll ticks every running member once, in ID order.
func (c *Cluster) TickAll() {
	for _, id := range c.ids {
		c.Tick(id)
	}
}

// Leader returns the running member that leads the highest term, or 0.
func (c *Cluster) Leader() uint64 {
	var lead, term uint64
	for _, id := range c.ids {
		m := c.members[id]
		if m.Node == nil {
			continue
		}
		st := m.Node.BasicStatus()
		if st.RaftState == raft.StateLeader && st.Term >= term {
			lead, term = id, st.Term
		}
	}
	return lead
}

// Process handles at most one Ready of a member, following the Ready
// contract; it reports whether there was one. A Crash hook may stop the
// member at any stage.
func (c *Cluster) Process(id uint64) (bool, error) {
	m := c.members[id]
	if m == nil || m.Node == nil || !m.Node.HasReady() {
		return false, nil
	}
	rd := m.Node.Ready()
	if c.Hooks.Ready != nil {
		c.Hooks.Ready(id, rd)
	}
	c.Net.Send(rd.Messages...)
	if c.crash(id, StageSent) {
		return true, nil
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := m.Storage.ApplySnapshot(rd.Snapshot); err != nil {
			return true, fmt.Errorf("member %d: saving snapshot: %w", id, err)
		}
	}
	if err := m.Storage.Append(rd.Entries); err != nil {
		return true, fmt.Errorf("member %d: appending: %w", id, err)
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		if err := m.Storage.SetHardState(rd.HardState); err != nil {
			return true, err
		}
	}
	if c.crash(id, StagePersisted) {
		return true, nil
	}
	c.Net.Send(rd.MessagesAfterPersist...)
	if err := c.apply(m, rd); err != nil {
		return true, err
	}
	m.ReadStates = append(m.ReadStates, rd.ReadStates...)
	if c.crash(id, StageApplied) {
		return true, nil
	}
	m.Node.Advance(rd)
	return true, nil
}

func (c *Cluster) crash(id uint64, s Stage) bool {
	if c.Hooks.Crash != nil && c.Hooks.Crash(id, s) {
		c.Crash(id)
		return true
	}
	return false
}

func (c *Cluster) apply(m *Member, rd raft.Ready) error {
	if !raft.IsEmptySnap(rd.Snapshot) {
		hash, data, err := decodeState(rd.Snapshot.Data)
		if err != nil {
			return fmt.Errorf("member %d: snapshot data: %w", m.ID, err)
		}
		m.Hash, m.Data = hash, data
		m.AppliedIndex = rd.Snapshot.Metadata.Index
		m.ConfState = rd.Snapshot.Metadata.ConfState
		if c.Hooks.SnapshotApplied != nil {
			c.Hooks.SnapshotApplied(m.ID, rd.Snapshot.Metadata, m.Hash)
		}
	}
	for _, e := range rd.CommittedEntries {
		if e.Index != m.AppliedIndex+1 {
			return fmt.Errorf("member %d: applying entry %d after %d: gap or repeat", m.ID, e.Index, m.AppliedIndex)
		}
		switch e.Type {
		case pb.EntryNormal:
			if len(e.Data) > 0 {
				m.Data = append(m.Data, e.Data)
			}
		case pb.EntryConfChange, pb.EntryConfChangeV2:
			cc, err := pb.ConfChangeFromEntry(e)
			if err != nil {
				return fmt.Errorf("member %d: %w", m.ID, err)
			}
			// A refused change leaves the configuration as it was, on every
			// member alike.
			if cs, err := m.Node.ApplyConfChange(cc); err == nil {
				m.ConfState = *cs
			}
		}
		m.Hash = chainHash(m.Hash, e)
		m.AppliedIndex = e.Index
		if c.Hooks.Applied != nil {
			c.Hooks.Applied(m.ID, e, m.Hash)
		}
	}
	return nil
}

// Compact snapshots a member's state at its applied index and drops the
// log before it, keeping keep entries.
func (c *Cluster) Compact(id uint64, keep uint64) error {
	m := c.members[id]
	if m.Node == nil {
		return nil
	}
	snap, err := m.Storage.Snapshot()
	if err != nil {
		return err
	}
	if m.AppliedIndex <= snap.Metadata.Index+keep {
		return nil
	}
	cs := m.ConfState
	if _, err := m.Storage.CreateSnapshot(m.AppliedIndex, &cs, encodeState(m.Hash, m.Data)); err != nil {
		return fmt.Errorf("member %d: creating snapshot: %w", id, err)
	}
	return m.Storage.Compact(m.AppliedIndex - keep)
}

// DeliverRound delivers the messages due in one network round, reporting
// snapshot outcomes and unreachable peers to senders as a transport would.
// It reports whether anything was delivered.
func (c *Cluster) DeliverRound() bool {
	deliver, blocked := c.Net.Round()
	for _, msg := range blocked {
		c.reportFailure(msg)
	}
	for _, msg := range deliver {
		to := c.members[msg.To]
		if to == nil || to.Node == nil {
			c.reportFailure(msg)
			continue
		}
		if err := to.Node.Step(msg); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
			c.opts.Logger.Debug("step failed", "to", msg.To, "type", msg.Type, "err", err)
		}
		if msg.Type == pb.MsgSnap {
			if from := c.members[msg.From]; from != nil && from.Node != nil {
				from.Node.ReportSnapshot(msg.To, raft.SnapshotFinish)
			}
		}
	}
	return len(deliver) > 0
}

func (c *Cluster) reportFailure(msg pb.Message) {
	from := c.members[msg.From]
	if from == nil || from.Node == nil {
		return
	}
	if msg.Type == pb.MsgSnap {
		from.Node.ReportSnapshot(msg.To, raft.SnapshotFailure)
	}
	from.Node.ReportUnreachable(msg.To)
}

// ProcessAll handles one Ready of every running member in ID order.
func (c *Cluster) ProcessAll() (bool, error) {
	any := false
	for _, id := range c.ids {
		ok, err := c.Process(id)
		if err != nil {
			return any, err
		}
		any = any || ok
	}
	return any, nil
}

// ErrNotStable is returned by Stabilize when activity does not die down.
var ErrNotStable = errors.New("rafttest: cluster did not stabilize")

// Stabilize handles Readys and delivers messages until nothing is left to
// do, without ticking.
func (c *Cluster) Stabilize() error {
	for i := 0; i < 10000; i++ {
		worked, err := c.ProcessAll()
		if err != nil {
			return err
		}
		delivered := c.DeliverRound()
		if !worked && !delivered && c.Net.Pending() == 0 {
			return nil
		}
	}
	return ErrNotStable
}

// Campaign makes a member start an election.
func (c *Cluster) Campaign(id uint64) error { return c.node(id).Campaign() }

// Propose proposes data on a member.
func (c *Cluster) Propose(id uint64, data []byte) error { return c.node(id).Propose(data) }

// ProposeConfChange proposes a membership change on a member.
func (c *Cluster) ProposeConfChange(id uint64, cc pb.ConfChangeI) error {
	return c.node(id).ProposeConfChange(cc)
}

// ReadIndex requests a read point on a member.
func (c *Cluster) ReadIndex(id uint64, ctx []byte) { c.node(id).ReadIndex(ctx) }

// TransferLeader asks member lead to transfer leadership to target.
func (c *Cluster) TransferLeader(lead, target uint64) { c.node(lead).TransferLeader(target) }

func (c *Cluster) node(id uint64) *raft.RawNode {
	m := c.members[id]
	if m == nil || m.Node == nil {
		panic(fmt.Sprintf("rafttest: member %d is not running", id))
	}
	return m.Node
}

// ElectLeader campaigns on id and stabilizes, returning an error unless id
// became leader.
func (c *Cluster) ElectLeader(id uint64) error {
	if err := c.Campaign(id); err != nil {
		return err
	}
	if err := c.Stabilize(); err != nil {
		return err
	}
	if lead := c.Leader(); lead != id {
		return fmt.Errorf("rafttest: member %d campaigned but leader is %d", id, lead)
	}
	return nil
}

// chainHash extends a state hash with one applied entry.
func chainHash(h uint64, e pb.Entry) uint64 {
	f := fnv.New64a()
	var buf [8 * 4]byte
	binary.LittleEndian.PutUint64(buf[0:], h)
	binary.LittleEndian.PutUint64(buf[8:], e.Index)
	binary.LittleEndian.PutUint64(buf[16:], e.Term)
	binary.LittleEndian.PutUint64(buf[24:], uint64(e.Type))
	f.Write(buf[:])
	f.Write(e.Data)
	return f.Sum64()
}

func encodeState(hash uint64, data [][]byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, hash)
	b = binary.AppendUvarint(b, uint64(len(data)))
	for _, d := range data {
		b = binary.AppendUvarint(b, uint64(len(d)))
		b = append(b, d...)
	}
	return b
}

func decodeState(b []byte) (uint64, [][]byte, error) {
	if len(b) < 8 {
		return 0, nil, errors.New("rafttest: state snapshot shorter than its hash")
	}
	hash := binary.LittleEndian.Uint64(b)
	b = b[8:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return 0, nil, errors.New("rafttest: bad state snapshot count")
	}
	b = b[k:]
	data := make([][]byte, 0, n)
	for i := uint64(0); i < n; i++ {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return 0, nil, errors.New("rafttest: bad state snapshot entry")
		}
		data = append(data, b[k:k+int(l)])
		b = b[k+int(l):]
	}
	return hash, data, nil
}
