package faults

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/testsupport"
)

// NATS users of the suite. The sidecar's user holds only the rights
// docs/nats-permissions.md lists; the publisher's may do anything.
const (
	sidecarUser   = "sidecar"
	publisherUser = "publisher"
)

// sidecarPermissions is the NATS permission block of the sidecar's user: exactly what
// docs/nats-permissions.md documents for stream REVOCATIONS.
const sidecarPermissions = `{
      publish: {allow: [
        "$JS.API.STREAM.INFO.REVOCATIONS",
        "$JS.API.CONSUMER.CREATE.REVOCATIONS.>",
        "$JS.API.CONSUMER.DELETE.REVOCATIONS.>",
        "$JS.API.CONSUMER.INFO.REVOCATIONS.>",
        "$JS.API.CONSUMER.MSG.NEXT.REVOCATIONS.>",
      ]}
      subscribe: {allow: ["_INBOX.>"]}
    }`

// natsCluster is one or more nats-server processes sharing the suite's users.
type natsCluster struct {
	t         *testing.T
	nodes     []*natsNode
	passwords map[string]string
}

// natsNode is one nats-server process; it restarts on the same ports and store.
type natsNode struct {
	t      *testing.T
	name   string
	port   int
	conf   string
	logf   string
	store  string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startNATS runs n nats-server processes with JetStream; with n > 1 they form a cluster.
func startNATS(t *testing.T, n int) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t, passwords: map[string]string{
		sidecarUser:   devissuer.RandomID(),
		publisherUser: devissuer.RandomID(),
	}}
	for _, p := range c.passwords {
		addSecret(p)
	}
	dir := t.TempDir()
	clientPorts := make([]int, n)
	routePorts := make([]int, n)
	for i := range n {
		clientPorts[i], routePorts[i] = testsupport.FreePort(t), testsupport.FreePort(t)
	}
	for i := range n {
		node := &natsNode{
			t:     t,
			name:  fmt.Sprintf("n%d", i+1),
			port:  clientPorts[i],
			conf:  filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1)),
			logf:  filepath.Join(dir, fmt.Sprintf("nats-n%d.log", i+1)),
			store: filepath.Join(dir, fmt.Sprintf("store-n%d", i+1)),
		}
		var cluster string
		if n > 1 {
			var routes []string
			for j := range n {
				if j != i {
					routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[j]))
				}
			}
			cluster = fmt.Sprintf("cluster {\n  name: revoked-faults\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n",
				routePorts[i], strings.Join(routes, ", "))
		}
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 1GB
}
authorization {
  users = [
    {user: %s, password: %q}
    {user: %s, password: %q, permissions: %s}
  ]
}
%s`, node.name, node.port, node.store, publisherUser, c.passwords[publisherUser],
			sidecarUser, c.passwords[sidecarUser], sidecarPermissions, cluster)
		if err := os.WriteFile(node.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		addLog(node.logf)
		c.nodes = append(c.nodes, node)
	}
	for _, node := range c.nodes {
		node.start()
	}
	t.Cleanup(func() {
		for _, node := range c.nodes {
			node.kill()
		}
	})
	return c
}

func (n *natsNode) start() {
	n.t.Helper()
	logf, err := os.OpenFile(n.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	cmd := exec.Command(bins.natsServer, "-c", n.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		n.t.Fatalf("nats-server %s: %v", n.name, err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}(n.exited)
	testsupport.WaitFor(n.t, 20*time.Second, "nats-server "+n.name+" listening", func() error {
		conn, err := net.DialTimeout("tcp", n.addr(), 200*time.Millisecond)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

// kill sends SIGKILL and waits for the process to end.
func (n *natsNode) kill() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
	n.cmd = nil
}

func (n *natsNode) addr() string { return fmt.Sprintf("127.0.0.1:%d", n.port) }
func (n *natsNode) url() string  { return "nats://" + n.addr() }

// urls is the comma-separated list of every node's URL.
func (c *natsCluster) urls() string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, n.url())
	}
	return strings.Join(u, ",")
}

// connect opens a publisher connection that reconnects forever.
func (c *natsCluster) connect(url string, name string) *nats.Conn {
	c.t.Helper()
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.UserInfo(publisherUser, c.passwords[publisherUser]),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.Timeout(2*time.Second),
	)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

// waitJetStream waits until JetStream answers through nc (a cluster has a meta leader).
func waitJetStream(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	testsupport.WaitFor(t, 60*time.Second, "JetStream available", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
}
