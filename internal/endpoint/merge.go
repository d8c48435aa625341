package endpoint

import (
	"errors"
	"net"
	"sync"
)

// Merge returns one listener that accepts the connections of all of lns
// (etcd's several --listen-peer-urls, served by one transport). Its
// address is the first one's; closing it closes them all.
func Merge(lns ...net.Listener) net.Listener {
	if len(lns) == 1 {
		return lns[0]
	}
	m := &merged{lns: lns, conns: make(chan net.Conn), done: make(chan struct{})}
	for _, ln := range lns {
		m.wg.Add(1)
		go m.accept(ln)
	}
	return m
}

type merged struct {
	lns   []net.Listener
	conns chan net.Conn
	done  chan struct{} // closed by Close
	once  sync.Once
	wg    sync.WaitGroup // the accept goroutines
}

// accept hands ln's connections to Accept until the merged listener
// closes (then it closes a connection nobody will take) or ln fails.
func (m *merged) accept(ln net.Listener) {
	defer m.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		select {
		case m.conns <- c:
		case <-m.done:
			c.Close()
			return
		}
	}
}

func (m *merged) Accept() (net.Conn, error) {
	select {
	case c := <-m.conns:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

// Close closes every listener and waits for their accept goroutines.
func (m *merged) Close() error {
	var err error
	m.once.Do(func() {
		close(m.done)
		for _, ln := range m.lns {
			err = errors.Join(err, ln.Close())
		}
		m.wg.Wait()
	})
	return err
}

func (m *merged) Addr() net.Addr { return m.lns[0].Addr() }
