module guildnet/bench/sseclient

go 1.22
