package apisix_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
)

// A route with ext-plugin-post-req running the userinfo plugin, and a forged
// header the plugin must strip.
func Example() {
	r, err := apisix.StartRunner(apisix.RunnerOptions{
		Binary: "/path/to/go-runner",
		Args:   []string{"run"},
		Env: []string{"REDIS_URL=redis://127.0.0.1:6379/0", // as listed in nginx_config.envs
			"REDIS_VALUE_SECRET=" + os.Getenv("REDIS_VALUE_SECRET")},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Stop()

	g := apisix.NewGateway(r.Socket())
	defer g.Close()
	route := &apisix.Route{ID: "1", Conf: []apisix.PluginConf{{Name: "userinfo", Value: `{}`}}}
	res, err := g.Do(context.Background(), route, &apisix.Request{
		Path:   "/app",
		Header: http.Header{"X_userinfo": {"forged"}, "Host": {"app.example.org"}},
	})
	if err != nil {
		log.Fatal(err) // the route or request is one APISIX would refuse
	}
	if res.Status == http.StatusServiceUnavailable {
		log.Print(res.Err) // what APISIX would write to error.log
	}
	fmt.Println(res.Status, res.Upstream, res.UpstreamHeader.Get("X_userinfo"))
}
