package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/config"
)

func init() { registerCommand(newACLCmd) }

// openAuthorizer opens the ACL store in the data directory (after the broker
// has locked it) and adds the ACLs of auth.acl that are missing.
func openAuthorizer(cfg config.Config, log *slog.Logger) (*auth.Authorizer, error) {
	super := cfg.Auth.SuperUsers
	if cfg.Auth.AdminPasswordFile != "" {
		super = append(slices.Clone(super), "User:"+cfg.Auth.AdminUser) // the bootstrap admin
	}
	a, err := auth.NewAuthorizer(auth.AuthorizerConfig{
		Enabled:    cfg.Auth.Authorization,
		SuperUsers: super,
		Path:       filepath.Join(cfg.DataDir, auth.ACLFile),
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	var seed []auth.ACL
	for i, e := range cfg.Auth.ACL {
		acls, err := configACLs(e)
		if err != nil {
			return nil, fmt.Errorf("auth.acl[%d]: %w", i, err)
		}
		seed = append(seed, acls...)
	}
	if err := a.Add(seed...); err != nil {
		return nil, fmt.Errorf("auth.acl: %w", err)
	}
	if cfg.Auth.Authorization {
		log.Info("authorization on", "acls", len(a.List(auth.Filter{})), "super_users", super)
	}
	return a, nil
}

// configACLs turns one auth.acl entry into one ACL per operation.
func configACLs(e config.ACLEntry) ([]auth.ACL, error) {
	rt, err := auth.ParseResourceType(e.Resource)
	if err != nil {
		return nil, err
	}
	name := e.Name
	if rt == auth.ResourceCluster && name == "" {
		name = auth.ClusterName
	}
	pat, perm := auth.PatternLiteral, auth.PermissionAllow
	if e.Pattern != "" {
		if pat, err = auth.ParsePatternType(e.Pattern); err != nil {
			return nil, err
		}
	}
	if e.Permission != "" {
		if perm, err = auth.ParsePermission(e.Permission); err != nil {
			return nil, err
		}
	}
	host := e.Host
	if host == "" {
		host = "*"
	}
	var out []auth.ACL
	for _, o := range e.Operations {
		op, err := auth.ParseOperation(o)
		if err != nil {
			return nil, err
		}
		a := auth.ACL{Principal: e.Principal, Host: host, ResourceType: rt, Name: name, Pattern: pat, Operation: op, Permission: perm}
		if err := a.Validate(); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// aclFlags select or describe ACLs on the command line, as kafka-acls does.
type aclFlags struct {
	principal, host            string
	topic, group, txnID        string
	cluster, prefixed, deny    bool
	operations                 []string
	anyPattern, anyPermissions bool
}

func (f *aclFlags) add(cmd *cobra.Command, filter bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.principal, "principal", "", "principal, e.g. User:alice or User:*")
	fl.StringVar(&f.topic, "topic", "", "topic name (or prefix with --prefixed; * = every topic)")
	fl.StringVar(&f.group, "group", "", "consumer group name (or prefix with --prefixed; * = every group)")
	fl.StringVar(&f.txnID, "transactional-id", "", "transactional id (or prefix with --prefixed; * = every id)")
	fl.BoolVar(&f.cluster, "cluster", false, "the cluster resource (kafka-cluster)")
	fl.BoolVar(&f.prefixed, "prefixed", false, "the name is a prefix (PREFIXED pattern) rather than a literal name")
	fl.StringSliceVar(&f.operations, "operation", nil, "operation(s): read, write, create, delete, alter, describe, cluster_action, describe_configs, alter_configs, idempotent_write, all")
	if filter {
		fl.StringVar(&f.host, "host", "", "client IP the ACL applies to (default: any host value)")
		fl.BoolVar(&f.deny, "deny", false, "only DENY ACLs (default: ALLOW and DENY)")
	} else {
		fl.StringVar(&f.host, "host", "*", "client IP the ACL applies to (* = any)")
		fl.BoolVar(&f.deny, "deny", false, "a DENY ACL (default: ALLOW); a matching DENY wins over every ALLOW")
	}
}

// resource returns the one resource the flags name; with none, any (for filters).
func (f *aclFlags) resource(required bool) (auth.ResourceType, *string, error) {
	var rt auth.ResourceType
	var name string
	n := 0
	if f.topic != "" {
		rt, name, n = auth.ResourceTopic, f.topic, n+1
	}
	if f.group != "" {
		rt, name, n = auth.ResourceGroup, f.group, n+1
	}
	if f.txnID != "" {
		rt, name, n = auth.ResourceTransactionalID, f.txnID, n+1
	}
	if f.cluster {
		rt, name, n = auth.ResourceCluster, auth.ClusterName, n+1
	}
	switch {
	case n > 1:
		return 0, nil, errors.New("name one resource: --topic, --group, --transactional-id or --cluster")
	case n == 0 && required:
		return 0, nil, errors.New("a resource is required: --topic, --group, --transactional-id or --cluster")
	case n == 0:
		return auth.ResourceAny, nil, nil
	}
	return rt, &name, nil
}

func (f *aclFlags) ops(required bool) ([]auth.Operation, error) {
	if len(f.operations) == 0 {
		if required {
			return nil, errors.New("--operation is required (e.g. --operation read)")
		}
		return []auth.Operation{auth.OpAny}, nil
	}
	var out []auth.Operation
	for _, s := range f.operations {
		op, err := auth.ParseOperation(s)
		if err != nil {
			return nil, fmt.Errorf("--operation: %w", err)
		}
		out = append(out, op)
	}
	return out, nil
}

func (f *aclFlags) pattern() auth.PatternType {
	if f.prefixed {
		return auth.PatternPrefixed
	}
	return auth.PatternLiteral
}

// filters builds one DeleteAcls/DescribeAcls filter per operation.
func (f *aclFlags) filters() ([]kmsg.DeleteACLsRequestFilter, error) {
	rt, name, err := f.resource(false)
	if err != nil {
		return nil, err
	}
	ops, err := f.ops(false)
	if err != nil {
		return nil, err
	}
	var out []kmsg.DeleteACLsRequestFilter
	for _, op := range ops {
		fl := kmsg.NewDeleteACLsRequestFilter()
		fl.ResourceType, fl.ResourceName = kmsg.ACLResourceType(rt), name
		fl.ResourcePatternType = kmsg.ACLResourcePatternTypeAny
		if name != nil {
			fl.ResourcePatternType = kmsg.ACLResourcePatternType(f.pattern())
		}
		if f.principal != "" {
			fl.Principal = &f.principal
		}
		if f.host != "" {
			fl.Host = &f.host
		}
		fl.Operation = kmsg.ACLOperation(op)
		fl.PermissionType = kmsg.ACLPermissionTypeAny
		if f.deny {
			fl.PermissionType = kmsg.ACLPermissionTypeDeny
		}
		out = append(out, fl)
	}
	return out, nil
}

func newACLCmd() *cobra.Command {
	var kf kafkaFlags
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Add, list and remove ACLs over the Kafka protocol (CreateAcls, DescribeAcls, DeleteAcls)",
	}
	kf.add(cmd)
	run := func(fn func(ctx context.Context, cl *kgo.Client) error) error {
		cl, err := kf.client()
		if err != nil {
			return err
		}
		defer cl.Close()
		ctx, cancel := signalContext()
		defer cancel()
		ctx, cancel2 := context.WithTimeout(ctx, kf.timeout)
		defer cancel2()
		return fn(ctx, cl)
	}

	var af aclFlags
	add := &cobra.Command{
		Use:   "add",
		Short: "Add an ACL (one per --operation)",
		Example: `  katka acl add --principal User:dashboard --topic sensors. --prefixed --operation read
  katka acl add --principal User:dashboard --group dash --operation read
  katka acl add --principal User:dashboard --topic sensors.private --operation read --deny`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if af.principal == "" {
				return errors.New("--principal is required (e.g. User:alice)")
			}
			rt, name, err := af.resource(true)
			if err != nil {
				return err
			}
			ops, err := af.ops(true)
			if err != nil {
				return err
			}
			req := kmsg.NewPtrCreateACLsRequest()
			for _, op := range ops {
				c := kmsg.NewCreateACLsRequestCreation()
				c.ResourceType, c.ResourceName, c.ResourcePatternType = kmsg.ACLResourceType(rt), *name, kmsg.ACLResourcePatternType(af.pattern())
				c.Principal, c.Host, c.Operation = af.principal, af.host, kmsg.ACLOperation(op)
				c.PermissionType = kmsg.ACLPermissionTypeAllow
				if af.deny {
					c.PermissionType = kmsg.ACLPermissionTypeDeny
				}
				req.Creations = append(req.Creations, c)
			}
			return run(func(ctx context.Context, cl *kgo.Client) error {
				resp, err := req.RequestWith(ctx, cl)
				if err != nil {
					return fmt.Errorf("create acls: %w", err)
				}
				for i, r := range resp.Results {
					if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
						return fmt.Errorf("create acl %s: %w%s", ops[i], err, msgSuffix(err, r.ErrorMessage))
					}
				}
				for _, op := range ops {
					perm := "ALLOW"
					if af.deny {
						perm = "DENY"
					}
					fmt.Printf("added %s %s %s on %s %s:%s from host %s\n", perm, af.principal, op, rt, af.pattern(), *name, af.host)
				}
				return nil
			})
		},
	}
	af.add(add, false)

	var lf aclFlags
	var listOut *outputFlag
	list := &cobra.Command{
		Use:   "list",
		Short: "List ACLs (all, or those the flags select)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fs, err := lf.filters()
			if err != nil {
				return err
			}
			return run(func(ctx context.Context, cl *kgo.Client) error {
				rows := []aclRow{}
				w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "PRINCIPAL\tHOST\tRESOURCE\tPATTERN\tNAME\tOPERATION\tPERMISSION")
				for _, f := range fs {
					req := kmsg.NewPtrDescribeACLsRequest()
					req.ResourceType, req.ResourceName, req.ResourcePatternType = f.ResourceType, f.ResourceName, f.ResourcePatternType
					req.Principal, req.Host, req.Operation, req.PermissionType = f.Principal, f.Host, f.Operation, f.PermissionType
					resp, err := req.RequestWith(ctx, cl)
					if err != nil {
						return fmt.Errorf("describe acls: %w", err)
					}
					if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
						return fmt.Errorf("describe acls: %w%s", err, msgSuffix(err, resp.ErrorMessage))
					}
					for _, r := range resp.Resources {
						for _, a := range r.ACLs {
							row := aclRow{a.Principal, a.Host, auth.ResourceType(r.ResourceType).String(), auth.PatternType(r.ResourcePatternType).String(),
								r.ResourceName, auth.Operation(a.Operation).String(), auth.Permission(a.PermissionType).String()}
							rows = append(rows, row)
							fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Principal, row.Host, row.Resource, row.Pattern, row.Name, row.Operation, row.Permission)
						}
					}
				}
				if listOut.json() {
					return writeJSON(cmd.OutOrStdout(), rows)
				}
				return w.Flush()
			})
		},
	}
	lf.add(list, true)
	listOut = addOutputFlag(list)

	var rf aclFlags
	remove := &cobra.Command{
		Use:   "remove",
		Short: "Remove the ACLs the flags select (at least --principal or a resource)",
		Example: `  katka acl remove --principal User:dashboard --topic sensors.private --operation read --deny
  katka acl remove --principal User:dashboard`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if rt, _, err := rf.resource(false); err != nil {
				return err
			} else if rt == auth.ResourceAny && rf.principal == "" {
				return errors.New("say what to remove: --principal and/or a resource (--topic, --group, --transactional-id, --cluster)")
			}
			fs, err := rf.filters()
			if err != nil {
				return err
			}
			return run(func(ctx context.Context, cl *kgo.Client) error {
				req := kmsg.NewPtrDeleteACLsRequest()
				req.Filters = fs
				resp, err := req.RequestWith(ctx, cl)
				if err != nil {
					return fmt.Errorf("delete acls: %w", err)
				}
				n := 0
				for _, r := range resp.Results {
					if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
						return fmt.Errorf("delete acls: %w%s", err, msgSuffix(err, r.ErrorMessage))
					}
					for _, m := range r.MatchingACLs {
						n++
						fmt.Printf("removed %s %s %s on %s %s:%s from host %s\n", auth.Permission(m.PermissionType), m.Principal, auth.Operation(m.Operation), auth.ResourceType(m.ResourceType), auth.PatternType(m.ResourcePatternType), m.ResourceName, m.Host)
					}
				}
				if n == 0 {
					fmt.Println("no ACL matched")
				}
				return nil
			})
		},
	}
	rf.add(remove, true)
	cmd.AddCommand(add, list, remove)
	return cmd
}

// msgSuffix is ": <message>" of a response's error message, unless err says it already.
func msgSuffix(err error, m *string) string {
	if m == nil || strings.TrimSpace(*m) == "" || strings.Contains(err.Error(), *m) {
		return ""
	}
	return ": " + *m
}
