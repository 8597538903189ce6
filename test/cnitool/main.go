// cnitool: a small test driver that calls CNI plugins the way container runtimes do,
// through the real libcni (Debian's golang-github-appc-cni-dev source, built with
// GO111MODULE=off GOPATH=/usr/share/gocode by scripts/build-test-tools.sh).
//
// Usage:
//
//	cnitool add|check|del <net> <netns-path>
//	cnitool gc|status <net> [<netns-path>]
//
// Environment (same names as upstream cnitool, plus the last three):
//
//	NETCONFPATH            directory with *.conflist / *.conf files (default /etc/cni/net.d)
//	CNI_PATH               plugin search path, ':'-separated
//	CNI_IFNAME             interface name in the pod (default eth0)
//	CNI_ARGS               "K=V;K=V" passed to the plugins as CNI_ARGS
//	CAP_ARGS               JSON object of capability arguments (runtimeConfig)
//	CNI_CONTAINERID        container ID (default: derived from the netns path)
//	CNI_CACHE_DIR          libcni result cache (default /var/lib/cni; tests use a temp dir)
//	CNI_VALID_ATTACHMENTS  gc only: JSON array of {"containerID","ifname"}; when unset,
//	                       every attachment of <net> in the result cache is valid
//
// stdout carries only protocol data: the ADD result in the list's cniVersion, or, when a
// plugin failed, its CNI error object {"code","msg","details"}. Diagnostics go to stderr.
// Exit status: 0 success, 1 failure, 2 usage.
//
// Debian ships libcni 1.1.2, which predates CNI spec 1.1.0: it has no GCNetworkList or
// GetStatusNetworkList and cannot parse a 1.1.0 result. gc and status are therefore
// implemented here on libcni's own building blocks (config loading and injection,
// invoke.FindInPath, invoke.ExecPluginWithoutResult) following SPEC.md 1.1. They send
// the highest of the list's cniVersion and cniVersions, so one list can say
// "cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0"] and work for every verb.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/ioutil"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

const usage = `usage: cnitool add|check|del <net> <netns-path>
       cnitool gc|status <net> [<netns-path>]`

// attachment is one entry of the cni.dev/valid-attachments list (SPEC 1.1, GC).
type attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

type driver struct {
	list     *libcni.NetworkConfigList
	cni      *libcni.CNIConfig
	rt       *libcni.RuntimeConf
	path     []string
	cacheDir string
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(argv []string) int {
	if len(argv) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	verb, netName := argv[0], argv[1]
	netns := ""
	if len(argv) > 2 {
		netns = argv[2]
	}
	switch verb {
	case "add", "check", "del":
		if netns == "" {
			fmt.Fprintln(os.Stderr, usage)
			return 2
		}
	case "gc", "status":
	default:
		fmt.Fprintf(os.Stderr, "cnitool: unknown command %q\n%s\n", verb, usage)
		return 2
	}

	d, err := newDriver(netName, netns)
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	switch verb {
	case "add":
		result, err := d.cni.AddNetworkList(ctx, d.list, d.rt)
		if err != nil {
			return fail(err)
		}
		if err := result.PrintTo(os.Stdout); err != nil {
			return fail(err)
		}
	case "check":
		err = d.cni.CheckNetworkList(ctx, d.list, d.rt)
	case "del":
		err = d.cni.DelNetworkList(ctx, d.list, d.rt)
	case "gc":
		err = d.gc(ctx)
	case "status":
		err = d.status(ctx)
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

func newDriver(netName, netns string) (*driver, error) {
	confDir := envOr("NETCONFPATH", "/etc/cni/net.d")
	list, err := libcni.LoadConfList(confDir, netName)
	if err != nil {
		return nil, fmt.Errorf("loading network %q from %s: %w", netName, confDir, err)
	}
	path := filepath.SplitList(os.Getenv("CNI_PATH"))
	cacheDir := envOr("CNI_CACHE_DIR", libcni.CacheDir)

	pluginArgs, err := parseCniArgs(os.Getenv("CNI_ARGS"))
	if err != nil {
		return nil, err
	}
	var capArgs map[string]interface{}
	if s := os.Getenv("CAP_ARGS"); s != "" {
		if err := json.Unmarshal([]byte(s), &capArgs); err != nil {
			return nil, fmt.Errorf("CAP_ARGS is not a JSON object: %w", err)
		}
	}
	containerID := os.Getenv("CNI_CONTAINERID")
	if containerID == "" && netns != "" {
		sum := sha256.Sum256([]byte(netns))
		containerID = "cnitool-" + hex.EncodeToString(sum[:10])
	}
	rt := &libcni.RuntimeConf{
		ContainerID:    containerID,
		NetNS:          netns,
		IfName:         envOr("CNI_IFNAME", "eth0"),
		Args:           pluginArgs,
		CapabilityArgs: capArgs,
	}
	return &driver{
		list:     list,
		cni:      libcni.NewCNIConfigWithCacheDir(path, cacheDir, nil),
		rt:       rt,
		path:     path,
		cacheDir: cacheDir,
	}, nil
}

// parseCniArgs splits "K=V;K=V" into libcni's pair list (empty entries ignored).
func parseCniArgs(s string) ([][2]string, error) {
	var out [][2]string
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		i := strings.IndexByte(kv, '=')
		if i <= 0 {
			return nil, fmt.Errorf("CNI_ARGS: %q is not KEY=VALUE", kv)
		}
		out = append(out, [2]string{kv[:i], kv[i+1:]})
	}
	return out, nil
}

// verbVersion picks the version for GC and STATUS: the highest of the list's
// cniVersion and its cniVersions (SPEC 1.1: a runtime uses the highest version it
// supports). libcni 1.1.2 reads only cniVersion, so add/check/del keep using that.
func (d *driver) verbVersion() (string, error) {
	var extra struct {
		CNIVersions []string `json:"cniVersions"`
	}
	if err := json.Unmarshal(d.list.Bytes, &extra); err != nil {
		return "", err
	}
	best := d.list.CNIVersion
	for _, v := range extra.CNIVersions {
		ge, err := version.GreaterThanOrEqualTo(v, best)
		if err != nil {
			return "", fmt.Errorf("cniVersions: %w", err)
		}
		if ge {
			best = v
		}
	}
	return best, nil
}

// atLeast110 returns the GC/STATUS version and whether it defines those verbs.
func (d *driver) atLeast110() (string, bool, error) {
	v, err := d.verbVersion()
	if err != nil {
		return "", false, err
	}
	ok, err := version.GreaterThanOrEqualTo(v, "1.1.0")
	return v, ok, err
}

// pluginConfig builds the stdin of one plugin for GC/STATUS: the list's name and
// cniVersion injected as libcni does for the other verbs, plus extra keys.
func (d *driver) pluginConfig(net *libcni.NetworkConfig, cniVersion string, extra map[string]interface{}) ([]byte, string, error) {
	inject := map[string]interface{}{"name": d.list.Name, "cniVersion": cniVersion}
	for k, v := range extra {
		inject[k] = v
	}
	conf, err := libcni.InjectConf(net, inject)
	if err != nil {
		return nil, "", err
	}
	exe, err := invoke.FindInPath(net.Network.Type, d.path)
	if err != nil {
		return nil, "", err
	}
	return conf.Bytes, exe, nil
}

func (d *driver) verbArgs(verb string) *invoke.Args {
	return &invoke.Args{Command: verb, Path: strings.Join(d.path, string(os.PathListSeparator))}
}

// status sends STATUS to every plugin of the list, first failure wins (SPEC 1.1).
func (d *driver) status(ctx context.Context) error {
	v, ok, err := d.atLeast110()
	if err != nil {
		return err
	}
	if !ok {
		fmt.Fprintf(os.Stderr, "cnitool: network %q has cniVersion %s: STATUS needs 1.1.0, nothing sent\n", d.list.Name, v)
		return nil
	}
	for _, net := range d.list.Plugins {
		conf, exe, err := d.pluginConfig(net, v, nil)
		if err != nil {
			return err
		}
		if err := invoke.ExecPluginWithoutResult(ctx, exe, conf, d.verbArgs("STATUS"), nil); err != nil {
			return fmt.Errorf("plugin type=%q failed (status): %w", net.Network.Type, err)
		}
	}
	return nil
}

// gc sends GC with cni.dev/valid-attachments to every plugin of the list, then drops
// the cached results of attachments that are not valid (as a runtime forgets them).
func (d *driver) gc(ctx context.Context) error {
	v, ok, err := d.atLeast110()
	if err != nil {
		return err
	}
	if !ok {
		fmt.Fprintf(os.Stderr, "cnitool: network %q has cniVersion %s: GC needs 1.1.0, nothing sent\n", d.list.Name, v)
		return nil
	}
	cached, err := d.cachedAttachments()
	if err != nil {
		return err
	}
	valid := make([]attachment, 0, len(cached))
	for a := range cached {
		valid = append(valid, a)
	}
	if s, set := os.LookupEnv("CNI_VALID_ATTACHMENTS"); set {
		valid = nil
		if err := json.Unmarshal([]byte(s), &valid); err != nil {
			return fmt.Errorf("CNI_VALID_ATTACHMENTS is not a JSON array of {containerID, ifname}: %w", err)
		}
	}
	sort.Slice(valid, func(i, j int) bool {
		if valid[i].ContainerID != valid[j].ContainerID {
			return valid[i].ContainerID < valid[j].ContainerID
		}
		return valid[i].IfName < valid[j].IfName
	})
	if valid == nil {
		valid = []attachment{}
	}
	for _, net := range d.list.Plugins {
		conf, exe, err := d.pluginConfig(net, v, map[string]interface{}{"cni.dev/valid-attachments": valid})
		if err != nil {
			return err
		}
		if err := invoke.ExecPluginWithoutResult(ctx, exe, conf, d.verbArgs("GC"), nil); err != nil {
			return fmt.Errorf("plugin type=%q failed (gc): %w", net.Network.Type, err)
		}
	}
	keep := map[attachment]bool{}
	for _, a := range valid {
		keep[a] = true
	}
	for a, file := range cached {
		if !keep[a] {
			if err := os.Remove(file); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
	}
	return nil
}

// cachedAttachments lists this network's entries in libcni's result cache
// (<cacheDir>/results/<net>-<containerID>-<ifname>, JSON with kind cniCacheV1).
func (d *driver) cachedAttachments() (map[attachment]string, error) {
	dir := filepath.Join(d.cacheDir, "results")
	entries, err := ioutil.ReadDir(dir)
	if os.IsNotExist(err) {
		return map[attachment]string{}, nil
	} else if err != nil {
		return nil, err
	}
	out := map[attachment]string{}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), d.list.Name+"-") {
			continue
		}
		file := filepath.Join(dir, e.Name())
		raw, err := ioutil.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var info struct {
			Kind        string `json:"kind"`
			ContainerID string `json:"containerId"`
			IfName      string `json:"ifName"`
			NetworkName string `json:"networkName"`
		}
		if err := json.Unmarshal(raw, &info); err != nil || info.Kind != libcni.CNICacheV1 {
			continue // not a libcni cache entry
		}
		if info.NetworkName == d.list.Name {
			out[attachment{ContainerID: info.ContainerID, IfName: info.IfName}] = file
		}
	}
	return out, nil
}

// fail reports err: a plugin's CNI error object goes to stdout (so callers can read its
// code), the full message chain to stderr.
func fail(err error) int {
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		if b, jerr := json.Marshal(cniErr); jerr == nil {
			fmt.Fprintln(os.Stdout, string(b))
		}
	}
	fmt.Fprintf(os.Stderr, "cnitool: %v\n", err)
	return 1
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
