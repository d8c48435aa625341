package server

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/synod-db/synod/mvcc"
)

// alarmSet is the cluster's raised alarms (NOSPACE, CORRUPT), replicated
// through raft so that every member refuses writes together.
type alarmSet struct {
	mu     sync.RWMutex
	alarms []*pb.AlarmMember
}

// storedAlarm is an alarm's persisted form.
type storedAlarm struct {
	MemberID uint64 `json:"memberID"`
	Alarm    int32  `json:"alarm"`
}

// loadAlarms reads the alarms stored in the key space.
func loadAlarms(kv *mvcc.Store) (*alarmSet, error) {
	a := &alarmSet{}
	b, err := kv.Meta(metaAlarms)
	if err != nil || b == nil {
		return a, err
	}
	var st []storedAlarm
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decode stored alarms: %w", err)
	}
	for _, x := range st {
		a.alarms = append(a.alarms, &pb.AlarmMember{MemberID: x.MemberID, Alarm: pb.AlarmType(x.Alarm)})
	}
	return a, nil
}

func (a *alarmSet) marshal() []byte {
	a.mu.RLock()
	defer a.mu.RUnlock()
	st := make([]storedAlarm, 0, len(a.alarms))
	for _, x := range a.alarms {
		st = append(st, storedAlarm{MemberID: x.MemberID, Alarm: int32(x.Alarm)})
	}
	b, _ := json.Marshal(st)
	return b
}

// replace takes the alarms of another set (after a snapshot).
func (a *alarmSet) replace(o *alarmSet) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.alarms = slices.Clone(o.alarms)
}

// list returns the alarms of type t (NONE: all).
func (a *alarmSet) list(t pb.AlarmType) []*pb.AlarmMember {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var out []*pb.AlarmMember
	for _, x := range a.alarms {
		if t == pb.AlarmType_NONE || x.Alarm == t {
			out = append(out, &pb.AlarmMember{MemberID: x.MemberID, Alarm: x.Alarm})
		}
	}
	return out
}

// active reports whether an alarm of type t is raised by any member.
func (a *alarmSet) active(t pb.AlarmType) bool { return len(a.list(t)) > 0 }

// set raises (on) or clears an alarm; it reports whether it changed.
func (a *alarmSet) set(m *pb.AlarmMember, on bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := slices.IndexFunc(a.alarms, func(x *pb.AlarmMember) bool {
		return x.Alarm == m.Alarm && (m.MemberID == 0 || x.MemberID == m.MemberID)
	})
	switch {
	case on && i < 0:
		a.alarms = append(a.alarms, &pb.AlarmMember{MemberID: m.MemberID, Alarm: m.Alarm})
		return true
	case !on && i >= 0:
		a.alarms = slices.DeleteFunc(a.alarms, func(x *pb.AlarmMember) bool {
			return x.Alarm == m.Alarm && (m.MemberID == 0 || x.MemberID == m.MemberID)
		})
		return true
	}
	return false
}

// applyAlarm applies an Alarm request.
func (a *applier) applyAlarm(index uint64, r *pb.AlarmRequest) (any, error) {
	resp := &pb.AlarmResponse{}
	m := &pb.AlarmMember{MemberID: r.MemberID, Alarm: r.Alarm}
	switch r.Action {
	case pb.AlarmRequest_GET:
		resp.Alarms = a.alarms.list(r.Alarm)
		return resp, a.kv.SetConsistentIndex(index)
	case pb.AlarmRequest_ACTIVATE:
		if r.Alarm == pb.AlarmType_NONE {
			return resp, a.kv.SetConsistentIndex(index)
		}
		if a.alarms.set(m, true) {
			a.lg.Warn("alarm raised", "alarm", r.Alarm.String(), "member", fmt.Sprintf("%x", r.MemberID))
		}
		resp.Alarms = []*pb.AlarmMember{m}
	case pb.AlarmRequest_DEACTIVATE:
		before := a.alarms.list(r.Alarm)
		if a.alarms.set(m, false) {
			a.lg.Info("alarm cleared", "alarm", r.Alarm.String(), "member", fmt.Sprintf("%x", r.MemberID))
			resp.Alarms = before
		}
	default:
		return resp, a.kv.SetConsistentIndex(index)
	}
	return resp, a.kv.SetMeta(index, metaAlarms, a.alarms.marshal())
}
