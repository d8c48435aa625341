package server

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/synod-db/synod/internal/endpoint"
)

// Member is one member of the cluster as the Cluster API reports it.
type Member struct {
	// ID is the raft ID, derived from the peer URLs and the cluster token.
	ID uint64 `json:"id"`
	// Name is the human-readable name; empty until the member has started.
	Name string `json:"name,omitempty"`
	// PeerURLs are where other members reach it.
	PeerURLs []string `json:"peerURLs"`
	// ClientURLs are where clients reach it; empty until it has started.
	ClientURLs []string `json:"clientURLs,omitempty"`
	// IsLearner marks a non-voting member.
	IsLearner bool `json:"isLearner,omitempty"`
}

// Errors of membership changes, mapped to etcd's by the API layer.
var (
	ErrMemberNotFound    = errors.New("server: member not found")
	ErrMemberExists      = errors.New("server: member ID already exists")
	ErrPeerURLExists     = errors.New("server: peer URL already exists")
	ErrMemberNotLearner  = errors.New("server: can only promote a learner member")
	ErrLearnerNotReady   = errors.New("server: can only promote a learner member which is in sync with leader")
	ErrTooManyLearners   = errors.New("server: too many learner members in cluster")
	ErrNotEnoughStarted  = errors.New("server: re-configuration failed due to not enough started members")
	ErrInvalidPeerURL    = errors.New("server: invalid peer URL")
	ErrIDRemoved         = errors.New("server: member was removed")
	ErrClusterIDMismatch = errors.New("server: cluster ID mismatch")
)

// MemberID derives a member's ID from its peer URLs, the cluster token and,
// for members added at runtime, a timestamp (so that re-adding a URL
// gives a fresh ID). Every member of a new cluster computes the same IDs
// from --initial-cluster, so no coordination is needed to bootstrap.
func MemberID(peerURLs []string, token string, now int64) uint64 {
	sorted := slices.Clone(peerURLs)
	slices.Sort(sorted)
	h := sha256.New()
	h.Write([]byte(strings.Join(sorted, ",")))
	h.Write([]byte{0})
	h.Write([]byte(token))
	if now != 0 {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(now)))
	}
	id := binary.BigEndian.Uint64(h.Sum(nil))
	if id == 0 {
		id = 1 // raft reserves 0 for "none"
	}
	return id
}

// ClusterID derives the cluster ID from the IDs of the initial members,
// so that members of one cluster agree on it and members of two clusters
// built from different flags (or tokens) reject each other.
func ClusterID(ids []uint64) uint64 {
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	h := sha256.New()
	for _, id := range sorted {
		h.Write(binary.BigEndian.AppendUint64(nil, id))
	}
	return binary.BigEndian.Uint64(h.Sum(nil))
}

// ParseInitialCluster parses --initial-cluster: name=url,name=url (a name
// may repeat for several URLs of one member).
func ParseInitialCluster(s string) (map[string][]string, error) {
	out := make(map[string][]string)
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, u, ok := strings.Cut(part, "=")
		if !ok || name == "" || u == "" {
			return nil, fmt.Errorf("initial cluster entry %q: want name=peer-url", part)
		}
		if err := checkURL(u); err != nil {
			return nil, fmt.Errorf("initial cluster entry %q: %w", part, err)
		}
		out[name] = append(out[name], u)
	}
	if len(out) == 0 {
		return nil, errors.New("initial cluster is empty: give at least name=peer-url for this member")
	}
	return out, nil
}

// checkURL accepts the peer URLs the transport can dial: http://host:port
// and unix sockets.
func checkURL(s string) error {
	if _, err := endpoint.Parse(s); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidPeerURL, err)
	}
	return nil
}

// membership is the cluster's member list as of the applied index. The
// apply goroutine changes it; API handlers and the transport read it.
type membership struct {
	mu      sync.RWMutex
	members map[uint64]*Member
	removed map[uint64]bool
}

// membershipState is membership's persisted form.
type membershipState struct {
	Members []*Member `json:"members"`
	Removed []uint64  `json:"removed,omitempty"`
}

func newMembership() *membership {
	return &membership{members: make(map[uint64]*Member), removed: make(map[uint64]bool)}
}

// list returns copies of the members sorted by ID.
func (m *membership) list() []Member {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Member, 0, len(m.members))
	for _, mem := range m.members {
		c := *mem
		c.PeerURLs = slices.Clone(mem.PeerURLs)
		c.ClientURLs = slices.Clone(mem.ClientURLs)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

func (m *membership) get(id uint64) (Member, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	mem, ok := m.members[id]
	if !ok {
		return Member{}, false
	}
	return *mem, true
}

// lookup reports whether id is a member and whether it was removed, under
// one lock: the peer handler asks for every message it receives.
func (m *membership) lookup(id uint64) (known, removed bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, known = m.members[id]
	return known, m.removed[id]
}

func (m *membership) isRemoved(id uint64) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.removed[id]
}

// marshal encodes the state for storage and for joining members.
func (m *membership) marshal() []byte {
	st := membershipState{}
	for _, mem := range m.list() {
		st.Members = append(st.Members, &mem)
	}
	m.mu.RLock()
	for id := range m.removed {
		st.Removed = append(st.Removed, id)
	}
	m.mu.RUnlock()
	slices.Sort(st.Removed)
	b, err := json.Marshal(st)
	if err != nil {
		panic(err) // plain structs always encode
	}
	return b
}

// load replaces the state with a marshaled one.
func (m *membership) load(b []byte) error {
	var st membershipState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("decode member list: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.members = make(map[uint64]*Member, len(st.Members))
	m.removed = make(map[uint64]bool, len(st.Removed))
	for _, mem := range st.Members {
		m.members[mem.ID] = mem
	}
	for _, id := range st.Removed {
		m.removed[id] = true
	}
	return nil
}

// add inserts or replaces a member.
func (m *membership) add(mem Member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := mem
	m.members[mem.ID] = &c
}

// remove deletes a member and remembers that its ID is gone for good.
func (m *membership) remove(id uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.members, id)
	m.removed[id] = true
}

// update changes a member in place with fn, if it exists.
func (m *membership) update(id uint64, fn func(*Member)) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem, ok := m.members[id]
	if ok {
		fn(mem)
	}
	return ok
}

// validateAdd checks a proposed new member against the current list.
func (m *membership) validateAdd(mem Member) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.removed[mem.ID] {
		return ErrIDRemoved
	}
	if _, ok := m.members[mem.ID]; ok {
		return ErrMemberExists
	}
	for _, other := range m.members {
		for _, u := range other.PeerURLs {
			if slices.Contains(mem.PeerURLs, u) {
				return ErrPeerURLExists
			}
		}
	}
	return nil
}
