package conf

import (
	"fmt"
	"strings"
)

// Files are pgpool.conf and pool_hba.conf as text.
type Files struct {
	PgpoolConf string
	PoolHBA    string
}

// AddOptions are what tls add asks of the two files.
type AddOptions struct {
	Paths    Paths
	SSLMode  string
	AuthMode string // "" keeps every rule's method
	// LeftoverTLS: "keep", "comment-out" or "" (refuse ssl_ca_cert_dir and
	// ssl_crl_file with cert auth, note them otherwise).
	LeftoverTLS string
	// RemoteTrust: HBAOptions.RemoteTrust.
	RemoteTrust string
}

// AddResult is the two files after AddTLS, with what the plan says of them.
type AddResult struct {
	Files
	HBA *HBAEdit
	// Enforced: enable_pool_hba was turned on.
	Enforced bool
	// Leftover names the ssl_ca_cert_dir / ssl_crl_file settings found.
	Leftover []string
	// Notes are sentences for the plan's warnings.
	Notes []string
}

// AddTLS turns TLS on in both files for o: ssl on with o.Paths,
// pool_hba.conf edited by EditHBA, and enable_pool_hba on when sslMode
// requires TLS or auth is cert (pool_hba.conf is not read without it). It
// works from what pgpool read before any edit of the plugin, so a resumed
// run writes the same text again.
func AddTLS(f Files, o AddOptions) (*AddResult, error) {
	pc := ParsePgpoolConf(f.PgpoolConf)
	if err := pc.Check("ssl", "enable_pool_hba"); err != nil {
		return nil, err
	}
	orig := pc.Original()
	res := &AddResult{Leftover: LeftoverTLS(orig)}
	if len(res.Leftover) > 0 {
		sets := strings.Join(res.Leftover, " and ")
		switch {
		case o.LeftoverTLS == "comment-out":
			CommentOutLeftoverTLS(pc)
			res.Notes = append(res.Notes, fmt.Sprintf("pgpool.conf sets %s: the plan empties them (--leftover-tls comment-out; remove puts them back)", sets))
		case o.LeftoverTLS == "keep":
			res.Notes = append(res.Notes, fmt.Sprintf("pgpool.conf sets %s, kept as --leftover-tls keep asks: every CA in ssl_ca_cert_dir is trusted beside the new one, and ssl_crl_file is checked against the new chain", sets))
		case o.AuthMode == "cert":
			return nil, fmt.Errorf("pgpool.conf sets %s: with --client-auth-mode cert, every CA in ssl_ca_cert_dir would be trusted beside the new one (any certificate they signed whose CN is a user name logs in), and an old ssl_crl_file is checked against the new chain; choose --leftover-tls keep or --leftover-tls comment-out", sets)
		default:
			res.Notes = append(res.Notes, fmt.Sprintf("pgpool.conf sets %s: every CA in ssl_ca_cert_dir is trusted beside the new one and ssl_crl_file is checked against the new chain; pass --leftover-tls comment-out to empty them", sets))
		}
	}
	for _, p := range []string{o.Paths.Cert, o.Paths.Key, o.Paths.CA} {
		if !QuoteOK(p) {
			return nil, fmt.Errorf("the TLS path %q cannot be written in pgpool.conf (a quote, backslash or line break)", p)
		}
	}
	EnableTLS(pc, o.Paths)
	enforce := TLSRequired(o.SSLMode) || o.AuthMode == "cert"
	wasEnforced := orig.Bool("enable_pool_hba")
	edit, err := EditHBA(f.PoolHBA, HBAOptions{SSLMode: o.SSLMode, AuthMode: o.AuthMode,
		EnforcedBefore: wasEnforced, EnforcedAfter: wasEnforced || enforce, SSLBefore: orig.Bool("ssl"), RemoteTrust: o.RemoteTrust})
	if err != nil {
		return nil, err
	}
	res.HBA = edit
	hba := edit.Text
	if enforce && !wasEnforced {
		Enforce(pc)
		hba = MarkHBAEnforced(hba)
		res.Enforced = true
	}
	res.PgpoolConf, res.PoolHBA = pc.String(), hba
	return res, nil
}

// RemoveResult is the two files after RemoveTLS.
type RemoveResult struct {
	Files
	HBA *HBAEdit
	// KeptEnforced: add turned enable_pool_hba on and it stays on (the
	// rules changed since, or there is no record of them).
	KeptEnforced bool
	Notes        []string
}

// RemoveTLS undoes AddTLS: every line it changed in both files gets back
// its original bytes. enable_pool_hba goes back off only when the rules of
// pool_hba.conf are still those add found: turning it off would stop
// pgpool enforcing rules added since.
func RemoveTLS(f Files, p Paths, authMode string) (*RemoveResult, error) {
	pc := ParsePgpoolConf(f.PgpoolConf)
	if err := pc.Check("ssl", "enable_pool_hba"); err != nil {
		return nil, err
	}
	res := &RemoveResult{}
	DisableTLS(pc, p)
	RestoreLeftoverTLS(pc)
	if Enforced(pc) {
		switch changed, known := HBAChangedSinceEnforced(f.PoolHBA); {
		case !known:
			res.KeptEnforced = true
			res.Notes = append(res.Notes, "enable_pool_hba stays on: tls add turned it on, but pool_hba.conf holds no record of its rules then (an older kubectl-pgpool wrote it), so rules added since might stop being enforced; set enable_pool_hba back yourself if none were added")
		case changed:
			res.KeptEnforced = true
			res.Notes = append(res.Notes, "enable_pool_hba stays on: tls add turned it on, but pool_hba.conf's rules changed since (added, removed or edited), and turning it off would stop pgpool enforcing them; set it yourself once you have checked them")
		default:
			Unenforce(pc)
		}
	}
	edit, err := RestoreHBA(f.PoolHBA, authMode)
	if err != nil {
		return nil, err
	}
	res.HBA = edit
	res.Notes = append(res.Notes, edit.Notes...)
	res.PgpoolConf, res.PoolHBA = pc.String(), edit.Text
	return res, nil
}
