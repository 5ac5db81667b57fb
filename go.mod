module github.com/vpcflow/vpcflow

go 1.26.8

require (
	github.com/contiv/libOpenflow v0.0.0-20210609050114-d967b14cc688 // indirect
	github.com/ovn-kubernetes/libovsdb v0.8.1 // indirect
	github.com/sirupsen/logrus v1.10.2 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/sys v0.30.0 // indirect
)
