// The sandbox ("pause") process of the real node's pods: PID 1 of every pod sandbox. It blocks
// until SIGTERM or SIGINT and reaps orphans (with a shared PID namespace, zombies are re-parented
// to it). Built static (CGO_ENABLED=0) by devtools/images/build.py.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
