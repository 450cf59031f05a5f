// grpc-consumer: real gRPC clients and servers on loopback, for the registry's consumer tests,
// the lossless harness and the warm-up benchmark. Nothing here knows the operator: the client
// reads the registry only through gRPC-Go's etcd naming resolver (go.etcd.io/etcd/client/v3/
// naming/resolver) or through gRPC-Go's DNS resolver asking CoreDNS, as a team's service would.
//
//	grpc-consumer serve ADDR...                 gRPC servers (the standard health service), one per
//	                                            address; stdin "stop ADDR" stops one gracefully
//	grpc-consumer etcd -endpoints URL -target etcd:///PREFIX/SVC/instances [-rate N]
//	grpc-consumer dns -server HOST:PORT -name instances.SVC. -port P [-rate N]
//
// The two clients make calls at -rate per second until stdin closes or SIGTERM, and print one
// JSON line per call on stdout: {"t": unix seconds, "addr": "ip:port" (the server that answered,
// from the call's peer), "ok": bool, "err": "..."}. Lines starting with "#" are status notes.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	etcdresolver "go.etcd.io/etcd/client/v3/naming/resolver"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

type outcome struct {
	T    float64 `json:"t"`
	Addr string  `json:"addr,omitempty"`
	OK   bool    `json:"ok"`
	Err  string  `json:"err,omitempty"`
}

// out serialises the lines of concurrent calls.
type out struct {
	mu  sync.Mutex
	enc *json.Encoder
	w   *bufio.Writer
}

func newOut() *out {
	w := bufio.NewWriterSize(os.Stdout, 64*1024)
	return &out{enc: json.NewEncoder(w), w: w}
}

func (o *out) line(v any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.enc.Encode(v)
	_ = o.w.Flush()
}

func (o *out) note(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.w, "# "+format+"\n", args...)
	_ = o.w.Flush()
}

// stopped is closed on SIGTERM/SIGINT or when stdin reaches its end (the parent went away).
func stopped() context.Context {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	go func() {
		_, _ = bufio.NewReader(os.Stdin).WriteTo(discard{})
		cancel()
	}()
	return ctx
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func now() float64 { return float64(time.Now().UnixNano()) / 1e9 }

// call makes calls at `rate` per second, each on its own goroutine so that a slow server does not
// slow the others' share, until ctx ends; every outcome is printed.
func call(ctx context.Context, o *out, rate float64, timeout time.Duration, one func(context.Context) (string, error)) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			started := now()
			addr, err := one(cctx)
			if err != nil {
				o.line(outcome{T: started, Addr: addr, Err: err.Error()})
				return
			}
			o.line(outcome{T: started, Addr: addr, OK: true})
		}()
	}
}

// check is one health Check call on conn; the address is the server's that answered.
func check(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	var p peer.Peer
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	addr := ""
	if p.Addr != nil {
		addr = p.Addr.String()
	}
	if err != nil {
		return addr, err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return addr, fmt.Errorf("status %s", resp.GetStatus())
	}
	return addr, nil
}

func runEtcd(args []string) error {
	fs := flag.NewFlagSet("etcd", flag.ExitOnError)
	endpoints := fs.String("endpoints", "http://127.0.0.1:2379", "etcd endpoints, comma-separated")
	target := fs.String("target", "", "gRPC target, e.g. etcd:////services/llm/instances")
	rate := fs.Float64("rate", 50, "calls per second")
	timeout := fs.Duration("timeout", 2*time.Second, "per-call deadline")
	balancer := fs.String("balancer", "round_robin", "gRPC load balancing policy")
	_ = fs.Parse(args)
	if *target == "" {
		return fmt.Errorf("-target is required")
	}
	ctx := stopped()
	o := newOut()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(*endpoints, ","),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return err
	}
	defer cli.Close()
	builder, err := etcdresolver.NewBuilder(cli)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(*target,
		grpc.WithResolvers(builder),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(fmt.Sprintf(`{"loadBalancingConfig": [{"%s":{}}]}`, *balancer)),
	)
	if err != nil {
		return err
	}
	defer conn.Close()
	o.note("calling %s through etcd's resolver at %s, %g/s, %s", *target, *endpoints, *rate, *balancer)
	call(ctx, o, *rate, *timeout, func(c context.Context) (string, error) { return check(c, conn) })
	return nil
}

// runDNS calls through gRPC-Go's own DNS resolver (target dns://SERVER/NAME:PORT): the A records
// CoreDNS's etcd plugin answers for the operator's entries, round-robined. gRPC resolves again
// when a connection breaks (a pod that stopped), not on a timer shorter than 30 s.
func runDNS(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ExitOnError)
	server := fs.String("server", "127.0.0.1:53", "DNS server host:port")
	name := fs.String("name", "", "name whose A records list the instances, e.g. instances.llm.")
	port := fs.Int("port", 0, "the instances' port (A records carry none)")
	rate := fs.Float64("rate", 50, "calls per second")
	timeout := fs.Duration("timeout", 2*time.Second, "per-call deadline")
	_ = fs.Parse(args)
	if *name == "" || *port == 0 {
		return fmt.Errorf("-name and -port are required")
	}
	ctx := stopped()
	o := newOut()
	target := fmt.Sprintf("dns://%s/%s:%d", *server, strings.TrimSuffix(*name, "."), *port)
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin":{}}]}`),
	)
	if err != nil {
		return err
	}
	defer conn.Close()
	o.note("calling %s through gRPC's DNS resolver, %g/s", target, *rate)
	call(ctx, o, *rate, *timeout, func(c context.Context) (string, error) { return check(c, conn) })
	return nil
}

func runServe(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("serve needs at least one address")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	o := newOut()
	servers := map[string]*grpc.Server{}
	var wg sync.WaitGroup
	for _, addr := range args {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		srv := grpc.NewServer()
		healthpb.RegisterHealthServer(srv, health.NewServer())
		servers[addr] = srv
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = srv.Serve(lis)
		}()
		o.note("listening %s", lis.Addr())
	}
	o.note("ready")
	go func() {
		// "stop ADDR": that server stops gracefully (in-flight calls finish); end of input: all do.
		scanner := bufio.NewScanner(os.Stdin)
		for scanner.Scan() {
			fields := strings.Fields(scanner.Text())
			if len(fields) == 2 && fields[0] == "stop" {
				if srv, ok := servers[fields[1]]; ok {
					srv.GracefulStop()
					o.note("stopped %s", fields[1])
				}
			}
		}
		cancel()
	}()
	<-ctx.Done()
	for _, srv := range servers {
		srv.GracefulStop()
	}
	wg.Wait()
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: grpc-consumer serve|etcd|dns ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = runServe(os.Args[2:])
	case "etcd":
		err = runEtcd(os.Args[2:])
	case "dns":
		err = runDNS(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc-consumer:", err)
		os.Exit(1)
	}
}
