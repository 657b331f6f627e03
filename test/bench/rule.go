package main

import "encoding/json"

// ruleConf is orgsync's conf c with the access rule rule added.
func ruleConf(c pluginConf, rule string) pluginConf {
	m := map[string]any{}
	_ = json.Unmarshal([]byte(c.value), &m) // c is built by orgsyncConf: valid JSON
	m["require"] = json.RawMessage(rule)
	return pluginConf{c.name, jsonConf(m)}
}

// ruleCost compares the chain with an access rule to the same chain without,
// on the same runner in the same rounds (issue 17: at most 3 % more).
func (r *report) ruleCost(with, without *variant, res map[string]map[int][]sample) {
	r.printf("### An access rule on the hit path\n\n")
	r.printf("%q against %q: the same runner, in the same rounds, the user a member of acme. Ratios of the first to "+
		"the second, per round: median (min-max).\n\n", with.name, without.name)
	r.printf("| conns | p50 | calls/s | runner CPU/call |\n|---:|---:|---:|---:|\n")
	for _, conns := range connCounts {
		a, b := res[with.key()][conns], res[without.key()][conns]
		var p50, tput, cpu []float64
		for i := range min(len(a), len(b)) {
			p50 = append(p50, float64(a[i].m.pct(0.5))/float64(b[i].m.pct(0.5)))
			tput = append(tput, a[i].m.throughput()/b[i].m.throughput())
			cpu = append(cpu, float64(a[i].m.cpuPerCall())/float64(b[i].m.cpuPerCall()))
		}
		r.printf("| %d | %s | %s | %s |\n", conns, spread(p50, "%.3f"), spread(tput, "%.3f"), spread(cpu, "%.3f"))
	}
	r.printf("\nTarget (issue 17): the hit path with a rule costs no more than 3 %% over the chain without.\n\n")
}
