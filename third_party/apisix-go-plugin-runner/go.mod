module github.com/apache/apisix-go-plugin-runner

go 1.15

require (
	github.com/ReneKroon/ttlcache/v2 v2.4.0
	github.com/api7/ext-plugin-proto v0.6.0
	github.com/google/flatbuffers v2.0.0+incompatible
	github.com/stretchr/testify v1.7.0
	go.uber.org/multierr v1.7.0 // indirect
	go.uber.org/zap v1.17.0
	golang.org/x/lint v0.0.0-20210508222113-6edffad5e616 // indirect
	golang.org/x/tools v0.1.9 // indirect
	gopkg.in/yaml.v2 v2.4.0 // indirect
)
