package raft

import pb "github.com/synod-db/synod/raft/raftpb"

// noLimit disables a size limit.
const noLimit = ^uint64(0)

// limitSize returns the longest prefix of ents whose total payload is at
// most maxSize, but never less than one entry.
func limitSize(ents []pb.Entry, maxSize uint64) []pb.Entry {
	if len(ents) == 0 || maxSize == noLimit {
		return ents
	}
	size := ents[0].PayloadSize()
	n := 1
	for ; n < len(ents); n++ {
		size += ents[n].PayloadSize()
		if size > maxSize {
			break
		}
	}
	return ents[:n]
}

// payloadsSize sums the payload of ents.
func payloadsSize(ents []pb.Entry) uint64 {
	var s uint64
	for i := range ents {
		s += ents[i].PayloadSize()
	}
	return s
}
