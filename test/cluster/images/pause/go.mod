module github.com/kubectl-pgpool/kubectl-pgpool/test/cluster/images/pause

go 1.26.0
