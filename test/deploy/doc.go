// Package deploy checks the deployment files that cannot be run here (no
// Docker engine, no APISIX): docker-compose.yml, the Dockerfile, and APISIX's
// conf/config.yaml and conf/apisix.yaml. The compose file is read with the
// compose-spec library, the APISIX files with a YAML parser, and every runner
// plugin config is parsed by the plugin itself; the runner binary is built and
// started with the compose environment. The Markdown documents are checked
// here too: their route examples pass the same rules, and their relative
// links and anchors lead somewhere.
package deploy
