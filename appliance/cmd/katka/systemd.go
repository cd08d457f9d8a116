package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// sdNotifier speaks systemd's notify protocol for a Type=notify unit: READY=1
// once katka serves, WATCHDOG=1 pings while it is alive, STOPPING=1 when it
// shuts down. Without $NOTIFY_SOCKET (not started by systemd) every call does
// nothing. The unit's NotifyAccess=main makes systemd ignore the same
// variable inherited by plugin processes.
type sdNotifier struct {
	log *slog.Logger
	wg  sync.WaitGroup
}

// notify sends one state; a failure is logged, never fatal: katka serves the
// same with or without a service manager listening.
func (n *sdNotifier) notify(state string) {
	sent, err := daemon.SdNotify(false, state)
	switch {
	case err != nil:
		n.log.Warn("systemd notify failed", "state", state, "err", err)
	case sent:
		n.log.Debug("systemd notified", "state", state)
	}
}

// ready tells systemd that recovery is done and every listener accepts
// connections; status is shown by `systemctl status katka`.
func (n *sdNotifier) ready(status string) {
	n.notify(daemon.SdNotifyReady + "\nSTATUS=" + status)
}

// stopping tells systemd that a clean shutdown has begun.
func (n *sdNotifier) stopping() {
	n.notify(daemon.SdNotifyStopping + "\nSTATUS=shutting down")
}

// watchdog pings systemd at half of WatchdogSec until ctx ends, when the unit
// sets WatchdogSec. Each ping first calls alive, which must block if katka is
// wedged (it takes the broker's lock), so that a deadlocked broker stops the
// pings and systemd restarts it.
func (n *sdNotifier) watchdog(ctx context.Context, alive func()) {
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.log.Warn("systemd watchdog setting ignored", "err", err)
		return
	}
	if every <= 0 {
		return
	}
	every /= 2
	n.log.Info("systemd watchdog on", "ping_every", every)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			alive()
			n.notify(daemon.SdNotifyWatchdog)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// wait returns once the watchdog goroutine has ended (after its ctx ended).
func (n *sdNotifier) wait() { n.wg.Wait() }
