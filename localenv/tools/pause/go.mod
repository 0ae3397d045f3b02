module launch-agent.local/localenv/tools/pause

go 1.26.0
