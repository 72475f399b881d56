package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// nullServer allows every check at once with one shared response: what remains of a
// check's latency is gRPC, protobuf and the scheduler.
type nullServer struct {
	authv3.UnimplementedAuthorizationServer
	ok *authv3.CheckResponse
}

func (s *nullServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return s.ok, nil
}

// serveNull serves the null Authorization server (and gRPC health) on a Unix socket
// until SIGTERM.
func serveNull(sock string) int {
	l, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "null server:", err)
		return 1
	}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, &nullServer{ok: &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(code.Code_OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		srv.Stop()
	}()
	_ = srv.Serve(l)
	return 0
}
