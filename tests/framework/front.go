package framework

// freeLoopbackAddrs returns n free loopback addresses, for a member that
// restarts on new ports.
func freeLoopbackAddrs(n int) ([]string, error) {
	addrs := make([]string, n)
	for i := range addrs {
		var err error
		if addrs[i], err = FreeLoopbackAddr(); err != nil {
			return nil, err
		}
	}
	return addrs, nil
}

// PeerFront stands in front of the members' peer ports, as a
// fault-injecting proxy does: each member advertises its front's address
// as its peer URL, so that every byte between members passes through it.
type PeerFront interface {
	// Front puts a front for the member called name before its peer
	// listener at addr. It returns the address to advertise, and how to
	// point the front at a new peer address (a restarted member listens
	// on new ports).
	Front(name, addr string) (advertised string, retarget func(addr string), err error)
	// Register tells the front the raft ID of the member called name.
	Register(id uint64, name string)
}
