package ui

import (
	"encoding/json"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
)

// Redact returns d as generic JSON data with every secret replaced by
// conf.Redacted: the value of an environment variable whose name says it
// is a secret ({"name": ..., "value": ...}, as in a pod template or a
// JSON patch of one), and secret values inside any string (a pool_hba.conf
// option, a pgpool.conf password).
func Redact(d any) (any, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return redact(v), nil
}

func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		name, _ := x["name"].(string)
		for k, e := range x {
			if _, str := e.(string); k == "value" && str && name != "" && conf.SecretEnv(name) && e != "" {
				x[k] = conf.Redacted
				continue
			}
			x[k] = redact(e)
		}
		return x
	case []any:
		for i := range x {
			x[i] = redact(x[i])
		}
		return x
	case string:
		return conf.RedactSecrets(x)
	}
	return v
}
