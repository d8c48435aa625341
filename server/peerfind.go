package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/synod-db/synod/server/transport"
)

// peerFindInterval bounds how often one unknown sender is looked up.
const peerFindInterval = time.Second

// peerFinder finds the peer URLs of members that send to this one before
// this member has applied their addition. A member cut off while another
// was added does not know the new member's address until it applies the
// conf change; if the new member becomes leader meanwhile, every reply to
// it would be dropped, the follower would never receive the entries that
// name it, and it would stay behind for as long as that member leads. So
// the first message from an unknown sender makes the member ask its known
// peers for their member lists and connect to the sender. The member list
// itself still changes only by applying the log.
type peerFinder struct {
	mu   sync.Mutex
	last map[uint64]time.Time // sender -> start of its last lookup
}

// find starts a lookup of id in the background unless the transport
// already reaches it or a lookup started less than peerFindInterval ago.
func (f *peerFinder) find(s *Server, id uint64) {
	if s.tr.HasPeer(id) {
		return
	}
	now := time.Now()
	f.mu.Lock()
	if f.last == nil {
		f.last = make(map[uint64]time.Time)
	}
	if t, ok := f.last[id]; ok && now.Sub(t) < peerFindInterval {
		f.mu.Unlock()
		return
	}
	f.last[id] = now
	f.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		defer cancel()
		ctx, stop := s.untilStopped(ctx)
		defer stop()
		urls, err := s.askPeersFor(ctx, id)
		if err != nil {
			s.lg.Warn("a member this one does not know yet sends to it; cannot find its address, so its messages go unanswered until the log names it",
				"member", fmt.Sprintf("%x", id), "err", err)
			return
		}
		if err := s.tr.AddPeer(id, urls); err != nil {
			s.lg.Warn("cannot connect to a member known to peers", "member", fmt.Sprintf("%x", id), "err", err)
			return
		}
		s.lg.Info("connected to a member this one has not applied the addition of yet", "member", fmt.Sprintf("%x", id), "urls", urls)
	}()
}

// askPeersFor asks the known members, one by one, for their member list
// and returns the peer URLs of member id from the first list holding it.
func (s *Server) askPeersFor(ctx context.Context, id uint64) ([]string, error) {
	var errs []error
	for _, m := range s.members.list() {
		if m.ID == s.id || m.ID == id || len(m.PeerURLs) == 0 {
			continue
		}
		cid, info, err := transport.FetchCluster(ctx, m.PeerURLs, s.id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if cid != s.clusterID {
			continue
		}
		ms := newMembership()
		if err := ms.load(info); err != nil {
			errs = append(errs, fmt.Errorf("member list from %x: %w", m.ID, err))
			continue
		}
		if mem, ok := ms.get(id); ok && len(mem.PeerURLs) > 0 {
			return mem.PeerURLs, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("no known member lists it: %w", errors.Join(errs...))
	}
	return nil, fmt.Errorf("no known member lists it")
}
