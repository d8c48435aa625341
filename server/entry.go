package server

import (
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The data of a normal raft entry is synod's: an envelope around etcd's
// InternalRaftRequest, so that synod can record what etcd's schema has no
// field for (who decided a lease expiry) and change its log format in a
// versioned way.
//
//	byte 0       0x00: the envelope's marker. A protobuf message never
//	             starts with it (field number 0 does not exist), so an
//	             entry without it is one written before the envelope: the
//	             bare InternalRaftRequest, read as before.
//	byte 1       the envelope's version, 1. A member refuses to go on
//	             with an entry of a version it does not know rather than
//	             skip it, which would make it diverge.
//	uvarint n    the length of synod's fields
//	n bytes      synod's fields, protobuf wire format with numbers of
//	             synod's own (entryExpiryTerm, entryExpiryGrant); unknown
//	             ones are skipped, so adding one needs no new version
//	the rest     the InternalRaftRequest
//
// Members of one cluster must all read the envelope: the peer protocol
// version (server/transport) went to 2 with it, so members of older
// builds and newer ones refuse each other instead of one skipping the
// other's entries, and the key space's format went to 3, so that an
// older build refuses a data directory whose log may hold envelopes.
const (
	entryMarker  = 0x00
	entryVersion = 1
)

// Synod's fields in an entry's envelope.
const (
	entryExpiryTerm  protowire.Number = 1 // expiry.term
	entryExpiryGrant protowire.Number = 2 // expiry.grantIndex
)

// errEntryVersion is the error of an entry in an envelope of a version
// this build does not know.
var errEntryVersion = errors.New("raft entry written in a newer format than this synod reads; upgrade this member")

// encodeEntry returns the data of the entry proposing req, with the lease
// expiry exp if not nil.
func encodeEntry(req *pb.InternalRaftRequest, exp *expiry) ([]byte, error) {
	var fields []byte
	if exp != nil {
		fields = protowire.AppendTag(fields, entryExpiryTerm, protowire.VarintType)
		fields = protowire.AppendVarint(fields, exp.term)
		fields = protowire.AppendTag(fields, entryExpiryGrant, protowire.VarintType)
		fields = protowire.AppendVarint(fields, exp.grantIndex)
	}
	size := proto.Size(req)
	b := make([]byte, 0, 2+protowire.SizeVarint(uint64(len(fields)))+len(fields)+size)
	b = append(b, entryMarker, entryVersion)
	b = protowire.AppendVarint(b, uint64(len(fields)))
	b = append(b, fields...)
	// proto.Size cached the sizes of req's messages: marshal without
	// computing them again.
	return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, req)
}

// entryRequestBytes returns the InternalRaftRequest's encoding within an
// entry's data (all of it for an entry written before the envelope), or
// nil if the envelope is malformed or of an unknown version.
func entryRequestBytes(data []byte) []byte {
	if len(data) == 0 || data[0] != entryMarker {
		return data
	}
	if len(data) < 2 || data[1] != entryVersion {
		return nil
	}
	n, m := protowire.ConsumeVarint(data[2:])
	if m < 0 || n > uint64(len(data)-2-m) {
		return nil
	}
	return data[2+m+int(n):]
}

// decodeEntry reads an entry's data: the request, and the lease expiry it
// carries if any. It reads entries written before the envelope (the bare
// request, with the expiry in unknown fields) as well.
func decodeEntry(data []byte) (*pb.InternalRaftRequest, *expiry, error) {
	req := &pb.InternalRaftRequest{}
	if len(data) == 0 || data[0] != entryMarker {
		if err := proto.Unmarshal(data, req); err != nil {
			return nil, nil, err
		}
		if exp, ok := legacyExpiryOf(req); ok {
			return req, &exp, nil
		}
		return req, nil, nil
	}
	if len(data) < 2 {
		return nil, nil, errors.New("raft entry envelope cut short")
	}
	if data[1] != entryVersion {
		return nil, nil, fmt.Errorf("%w (envelope version %d, this synod reads %d)", errEntryVersion, data[1], entryVersion)
	}
	n, m := protowire.ConsumeVarint(data[2:])
	if m < 0 || n > uint64(len(data)-2-m) {
		return nil, nil, errors.New("raft entry envelope: bad length of synod's fields")
	}
	fields, body := data[2+m:2+m+int(n)], data[2+m+int(n):]
	exp, err := decodeEntryFields(fields)
	if err != nil {
		return nil, nil, err
	}
	if err := proto.Unmarshal(body, req); err != nil {
		return nil, nil, err
	}
	return req, exp, nil
}

// decodeEntryFields reads synod's fields of an envelope.
func decodeEntryFields(b []byte) (*expiry, error) {
	e, hasTerm, hasGrant, err := readExpiry(b, entryExpiryTerm, entryExpiryGrant)
	switch {
	case err != nil:
		return nil, fmt.Errorf("raft entry envelope: %w", err)
	case hasTerm != hasGrant:
		return nil, errors.New("raft entry envelope: an expiry without its term or grant")
	case !hasTerm:
		return nil, nil
	}
	return &e, nil
}
