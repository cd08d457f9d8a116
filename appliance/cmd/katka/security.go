package main

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/kafka"
)

// kafkaSecurityConfig is what the Kafka server needs from kafka.listeners and
// auth: its listeners, the user store and the super users.
type kafkaSecurityConfig struct {
	listeners  []kafka.ListenerConfig
	users      *auth.Store
	superUsers []auth.Principal
}

// kafkaSecurity maps the config's listeners and auth sections to the Kafka
// server, opens the user store and bootstraps the admin user.
func kafkaSecurity(cfg config.Config, log *slog.Logger) (kafkaSecurityConfig, error) {
	var out kafkaSecurityConfig
	users, err := auth.OpenStore(cfg.DataDir)
	if err != nil {
		return out, err
	}
	out.users = users
	if cfg.Kafka.Addr != "" {
		out.listeners = append(out.listeners, kafka.ListenerConfig{Name: "PLAINTEXT", Addr: cfg.Kafka.Addr, AdvertisedAddr: cfg.Kafka.AdvertisedAddr, Security: kafka.Plaintext})
	}
	for _, l := range cfg.Kafka.Listeners {
		lc := kafka.ListenerConfig{
			Name: l.Name, Addr: l.Addr, AdvertisedAddr: l.AdvertisedAddr, Security: kafka.Security(l.Security),
			TLS: kafka.TLSConfig{CertFile: l.TLS.CertFile, KeyFile: l.TLS.KeyFile, CAFile: l.TLS.CAFile, ClientAuth: l.TLS.ClientAuth, PrincipalFrom: l.TLS.Principal},
		}
		for _, m := range l.Mechanisms {
			lc.Mechanisms = append(lc.Mechanisms, auth.Mechanism(m))
		}
		out.listeners = append(out.listeners, lc)
	}
	for _, s := range cfg.Auth.SuperUsers {
		p, err := auth.ParsePrincipal(s)
		if err != nil {
			return out, fmt.Errorf("auth.super_users: %w", err)
		}
		out.superUsers = append(out.superUsers, p)
	}
	if cfg.Auth.AdminPasswordFile != "" {
		admin := auth.Principal{Type: "User", Name: cfg.Auth.AdminUser}
		out.superUsers = append(out.superUsers, admin)
		if err := bootstrapAdmin(users, cfg.Auth, log); err != nil {
			return out, err
		}
	}
	return out, nil
}

// bootstrapAdmin gives auth.admin_user SCRAM credentials from the password
// file when it has none; existing credentials (perhaps changed since with
// kadm) are left alone.
func bootstrapAdmin(users *auth.Store, a config.Auth, log *slog.Logger) error {
	infos, err := users.Users(a.AdminUser)
	if err != nil {
		return err
	}
	if len(infos) > 0 {
		return nil
	}
	f, err := os.Open(a.AdminPasswordFile)
	if err != nil {
		return fmt.Errorf("auth.admin_password_file: %w", err)
	}
	defer f.Close()
	pw, err := readPassword(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("auth.admin_password_file %s: %w", a.AdminPasswordFile, err)
	}
	if err := users.SetPassword(a.AdminUser, pw, a.ScramIterations, auth.ScramMechanisms...); err != nil {
		return err
	}
	log.Info("bootstrap admin user created", "user", a.AdminUser, "mechanisms", "SCRAM-SHA-256,SCRAM-SHA-512", "store", users.Path())
	return nil
}

// readPassword reads one line, without its line ending; an empty password
// is an error.
func readPassword(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no password given")
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("empty password")
	}
	return pw, nil
}
