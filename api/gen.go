// Package api holds synod's protocol definitions beyond etcd's API module:
// the lock and election services (v3lockpb, v3electionpb), which etcd
// defines in its server module, on which synod does not depend.
package api

//go:generate protoc -I proto -I v3lockpb --go_out=v3lockpb --go_opt=paths=source_relative --go-grpc_out=v3lockpb --go-grpc_opt=paths=source_relative v3lock.proto
//go:generate protoc -I proto -I v3electionpb --go_out=v3electionpb --go_opt=paths=source_relative --go-grpc_out=v3electionpb --go-grpc_opt=paths=source_relative v3election.proto
