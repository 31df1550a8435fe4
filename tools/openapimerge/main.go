// Command openapimerge adds hand-written paths (the gateway's custom HTTP routes,
// which have no google.api.http rule) to the generated OpenAPI document. It is run
// by scripts/proto.sh; its output is deterministic (keys sorted, two-space indent).
//
//	openapimerge GENERATED.json EXTRA.json   (rewrites GENERATED.json in place)
package main

import (
	"encoding/json"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: openapimerge GENERATED.json EXTRA.json")
		os.Exit(2)
	}
	if err := merge(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "openapimerge:", err)
		os.Exit(1)
	}
}

func merge(genPath, extraPath string) error {
	var gen, extra map[string]any
	if err := readJSON(genPath, &gen); err != nil {
		return err
	}
	if err := readJSON(extraPath, &extra); err != nil {
		return err
	}
	paths, _ := gen["paths"].(map[string]any)
	if paths == nil {
		return fmt.Errorf("%s has no paths", genPath)
	}
	extraPaths, _ := extra["paths"].(map[string]any)
	for path, ops := range extraPaths {
		existing, _ := paths[path].(map[string]any)
		if existing == nil {
			existing = map[string]any{}
		}
		for method, op := range ops.(map[string]any) {
			if _, dup := existing[method]; dup {
				return fmt.Errorf("%s %s is already generated from the protos", method, path)
			}
			existing[method] = op
		}
		paths[path] = existing
	}
	out, err := json.MarshalIndent(gen, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(genPath, append(out, '\n'), 0o644)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
