module infer-operator.local/devtools/pause

go 1.22
