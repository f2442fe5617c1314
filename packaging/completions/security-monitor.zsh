#compdef security-monitor

autoload -U is-at-least

_security-monitor() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_security-monitor_commands" \
"*::: :->security-monitor" \
&& ret=0
    case $state in
    (security-monitor)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:security-monitor-command-$line[1]:"
        case $line[1] in
            (check)
_arguments "${_arguments_options[@]}" : \
'-c+[Config file (default\: /etc/security-monitor/monitor_config.json if it exists, else built-in defaults)]:CONFIG:_files' \
'--config=[Config file (default\: /etc/security-monitor/monitor_config.json if it exists, else built-in defaults)]:CONFIG:_files' \
'-f+[Log format\: auto, combined, common, vhost_combined, json, a profile, or a name under "formats" in the config]:FORMAT:_default' \
'--format=[Log format\: auto, combined, common, vhost_combined, json, a profile, or a name under "formats" in the config]:FORMAT:_default' \
'(-f --format)-p+[Read the logs as this application profile (\`security-monitor profiles\` lists them)]:PROFILE:_default' \
'(-f --format)--profile=[Read the logs as this application profile (\`security-monitor profiles\` lists them)]:PROFILE:_default' \
'*--learn=[Learn the baselines from this log first (ordinary traffic; repeatable), then judge LOGFILES. Implies --anomalies]:FILE:_files' \
'()*--container=[Replay this container'\''s past log (through the Docker API, read as the daemon would read it) instead of log files; repeatable. Implies --anomalies]:NAME:_default' \
'--since=[With --container\: the history from this long ago (\`24h\`, \`30m\`, \`7d\`) or this time (\`2026-11-21T10\:00\:00Z\`) on \[default\: 24h\]]:WHEN:_default' \
'--max-lines=[With --container\: at most this many lines per container, the newest (the report says when this cut the history) \[default\: 1000000\]]:N:_default' \
'--json[Print one JSON object instead of the report]' \
'--anomalies[Also judge each request against per-endpoint baselines learned from the logs'\'' own ordinary traffic, and list what looks unusual]' \
'-h[Print help]' \
'--help[Print help]' \
'*::logfiles -- Log files to read; `-` reads standard input:_files' \
&& ret=0
;;
(check-config)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
'::file -- Config file (default\: /etc/security-monitor/monitor_config.json):_files' \
&& ret=0
;;
(run)
_arguments "${_arguments_options[@]}" : \
'-c+[]:CONFIG:_files' \
'--config=[]:CONFIG:_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
'-c+[]:CONFIG:_files' \
'--config=[]:CONFIG:_files' \
'--json[]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(reload)
_arguments "${_arguments_options[@]}" : \
'-c+[]:CONFIG:_files' \
'--config=[]:CONFIG:_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(ban)
_arguments "${_arguments_options[@]}" : \
'--for=[How long, e.g. 90s, 10m, 24h, 7d (default\: ban.duration with repeat escalation)]:DURATION:_default' \
'--reason=[Why, kept in blocked_ips.json]:REASON:_default' \
'-c+[]:CONFIG:_files' \
'--config=[]:CONFIG:_files' \
'--fleet[Wait until the fleet has the ban (every host applies it) and say so; needs the running daemon with \`fleet\` enabled]' \
'-h[Print help]' \
'--help[Print help]' \
':ip:_default' \
&& ret=0
;;
(unban)
_arguments "${_arguments_options[@]}" : \
'-c+[]:CONFIG:_files' \
'--config=[]:CONFIG:_files' \
'--fleet[Lift it on every host of the fleet (each host deletes its own record of it)]' \
'-h[Print help]' \
'--help[Print help]' \
':ip:_default' \
&& ret=0
;;
(list)
_arguments "${_arguments_options[@]}" : \
'-c+[]:CONFIG:_files' \
'--config=[]:CONFIG:_files' \
'--fleet[The fleet'\''s records instead\: each ban'\''s origin, rule, expiry and whether this host applied, refused or held it]' \
'--json[]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(restore)
_arguments "${_arguments_options[@]}" : \
'-c+[]:CONFIG:_files' \
'--config=[]:CONFIG:_files' \
'--json[]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(watch)
_arguments "${_arguments_options[@]}" : \
'-c+[Config file (default\: /etc/security-monitor/monitor_config.json if it exists, else built-in defaults)]:CONFIG:_files' \
'--config=[Config file (default\: /etc/security-monitor/monitor_config.json if it exists, else built-in defaults)]:CONFIG:_files' \
'--state-dir=[Keep log cursors in this directory and resume from them (by default \`watch\` keeps none and starts docker.max_backlog back; never point it at the daemon'\''s state.dir while the daemon runs)]:DIR:_files' \
'--json[Print one JSON object per line]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(remove-firewall)
_arguments "${_arguments_options[@]}" : \
'-c+[]:CONFIG:_files' \
'--config=[]:CONFIG:_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(alerts)
_arguments "${_arguments_options[@]}" : \
'--since=[Only alerts seen within this long (\`1h\`, \`30m\`) or since this time (\`2026-11-21T10\:00\:00Z\`)]:SINCE:_default' \
'--severity=[The least severity shown\: low, medium, high, critical]:SEVERITY:(low medium high critical)' \
'--ip=[Only alerts about this IP]:IP:_default' \
'--container=[Only alerts about this container (by name)]:CONTAINER:_default' \
'--kind=[Only alerts of this kind]:KIND:(rule_hit ban unban held never_ban error_rate docker_disconnected docker_reconnected firewall_error reload_failed unparsed_lines anomaly)' \
'-n+[At most this many, the newest]:LIMIT:_default' \
'--limit=[At most this many, the newest]:LIMIT:_default' \
'-c+[]:CONFIG:_files' \
'--config=[]:CONFIG:_files' \
'--json[]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(insights)
_arguments "${_arguments_options[@]}" : \
'-c+[]:CONFIG:_files' \
'--config=[]:CONFIG:_files' \
'--json[]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(health)
_arguments "${_arguments_options[@]}" : \
'-c+[]:CONFIG:_files' \
'--config=[]:CONFIG:_files' \
'--json[]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(metrics)
_arguments "${_arguments_options[@]}" : \
'-c+[]:CONFIG:_files' \
'--config=[]:CONFIG:_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(test-notify)
_arguments "${_arguments_options[@]}" : \
'-c+[Config file (default\: /etc/security-monitor/monitor_config.json)]:CONFIG:_files' \
'--config=[Config file (default\: /etc/security-monitor/monitor_config.json)]:CONFIG:_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(completions)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
':shell:(bash elvish fish powershell zsh)' \
&& ret=0
;;
(rules)
_arguments "${_arguments_options[@]}" : \
'-c+[]:CONFIG:_files' \
'--config=[]:CONFIG:_files' \
'--json[]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(profiles)
_arguments "${_arguments_options[@]}" : \
'--json[]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_security-monitor__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:security-monitor-help-command-$line[1]:"
        case $line[1] in
            (check)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(check-config)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(run)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(reload)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(ban)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(unban)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(list)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(restore)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(watch)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(remove-firewall)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(alerts)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(insights)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(health)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(metrics)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(test-notify)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(completions)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(rules)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(profiles)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
}

(( $+functions[_security-monitor_commands] )) ||
_security-monitor_commands() {
    local commands; commands=(
'check:Replay log files, or a container'\''s own history through the Docker API, through the detector and report what the daemon would do (never banning)' \
'check-config:Validate a config file (like \`nginx -t\`); exits non-zero on any error' \
'run:Run the daemon\: follow Docker logs, detect, ban (what systemd starts)' \
'status:How the running daemon is doing\: uptime, firewall, containers and their streams, bans, rates' \
'reload:Make the running daemon re-read its config (like \`systemctl reload security-monitor\`)' \
'ban:Ban an IP now (in the firewall and blocked_ips.json)' \
'unban:Lift a ban now. Unbanning an IP that is not banned is not an error' \
'list:List the active bans' \
'restore:Reconcile blocked_ips.json with the firewall and apply every active ban in one batch (what the daemon does at start)' \
'watch:Follow the selected containers'\'' logs through the Docker API and print each line (a debugging tool\: what the daemon would read)' \
'remove-firewall:Remove security-monitor'\''s own firewall table/chains/sets (lifts every ban; used by \`install.sh --uninstall\`)' \
'alerts:Recent alerts\: rule hits, bans, unbans, held bans, error-rate jumps, lost Docker connections (repeats folded, with a count). Without a running daemon, read from the alerts log in state.dir' \
'insights:The risk summary\: a score from 0 to 100, its band, and the signals behind it' \
'health:Whether the running daemon is well (exit 0) or degraded (exit 1), and why' \
'metrics:Print the daemon'\''s Prometheus metrics (what \`metrics.listen\` serves over HTTP)' \
'test-notify:Send a test notice through every configured channel (mail, each webhook) now and report each result; exits non-zero if any failed' \
'completions:Print shell completions (bash, zsh, fish, elvish, powershell)' \
'rules:List the rules in effect\: built-in and the config'\''s own patterns' \
'profiles:List the application profiles\: the images that choose each, its line shapes, what counts as a failure' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'security-monitor commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__alerts_commands] )) ||
_security-monitor__subcmd__alerts_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor alerts commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__ban_commands] )) ||
_security-monitor__subcmd__ban_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor ban commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__check_commands] )) ||
_security-monitor__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor check commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__check-config_commands] )) ||
_security-monitor__subcmd__check-config_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor check-config commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__completions_commands] )) ||
_security-monitor__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor completions commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__health_commands] )) ||
_security-monitor__subcmd__health_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor health commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help_commands] )) ||
_security-monitor__subcmd__help_commands() {
    local commands; commands=(
'check:Replay log files, or a container'\''s own history through the Docker API, through the detector and report what the daemon would do (never banning)' \
'check-config:Validate a config file (like \`nginx -t\`); exits non-zero on any error' \
'run:Run the daemon\: follow Docker logs, detect, ban (what systemd starts)' \
'status:How the running daemon is doing\: uptime, firewall, containers and their streams, bans, rates' \
'reload:Make the running daemon re-read its config (like \`systemctl reload security-monitor\`)' \
'ban:Ban an IP now (in the firewall and blocked_ips.json)' \
'unban:Lift a ban now. Unbanning an IP that is not banned is not an error' \
'list:List the active bans' \
'restore:Reconcile blocked_ips.json with the firewall and apply every active ban in one batch (what the daemon does at start)' \
'watch:Follow the selected containers'\'' logs through the Docker API and print each line (a debugging tool\: what the daemon would read)' \
'remove-firewall:Remove security-monitor'\''s own firewall table/chains/sets (lifts every ban; used by \`install.sh --uninstall\`)' \
'alerts:Recent alerts\: rule hits, bans, unbans, held bans, error-rate jumps, lost Docker connections (repeats folded, with a count). Without a running daemon, read from the alerts log in state.dir' \
'insights:The risk summary\: a score from 0 to 100, its band, and the signals behind it' \
'health:Whether the running daemon is well (exit 0) or degraded (exit 1), and why' \
'metrics:Print the daemon'\''s Prometheus metrics (what \`metrics.listen\` serves over HTTP)' \
'test-notify:Send a test notice through every configured channel (mail, each webhook) now and report each result; exits non-zero if any failed' \
'completions:Print shell completions (bash, zsh, fish, elvish, powershell)' \
'rules:List the rules in effect\: built-in and the config'\''s own patterns' \
'profiles:List the application profiles\: the images that choose each, its line shapes, what counts as a failure' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'security-monitor help commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__alerts_commands] )) ||
_security-monitor__subcmd__help__subcmd__alerts_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help alerts commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__ban_commands] )) ||
_security-monitor__subcmd__help__subcmd__ban_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help ban commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__check_commands] )) ||
_security-monitor__subcmd__help__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help check commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__check-config_commands] )) ||
_security-monitor__subcmd__help__subcmd__check-config_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help check-config commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__completions_commands] )) ||
_security-monitor__subcmd__help__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help completions commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__health_commands] )) ||
_security-monitor__subcmd__help__subcmd__health_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help health commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__help_commands] )) ||
_security-monitor__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help help commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__insights_commands] )) ||
_security-monitor__subcmd__help__subcmd__insights_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help insights commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__list_commands] )) ||
_security-monitor__subcmd__help__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help list commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__metrics_commands] )) ||
_security-monitor__subcmd__help__subcmd__metrics_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help metrics commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__profiles_commands] )) ||
_security-monitor__subcmd__help__subcmd__profiles_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help profiles commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__reload_commands] )) ||
_security-monitor__subcmd__help__subcmd__reload_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help reload commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__remove-firewall_commands] )) ||
_security-monitor__subcmd__help__subcmd__remove-firewall_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help remove-firewall commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__restore_commands] )) ||
_security-monitor__subcmd__help__subcmd__restore_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help restore commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__rules_commands] )) ||
_security-monitor__subcmd__help__subcmd__rules_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help rules commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__run_commands] )) ||
_security-monitor__subcmd__help__subcmd__run_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help run commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__status_commands] )) ||
_security-monitor__subcmd__help__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help status commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__test-notify_commands] )) ||
_security-monitor__subcmd__help__subcmd__test-notify_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help test-notify commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__unban_commands] )) ||
_security-monitor__subcmd__help__subcmd__unban_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help unban commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__help__subcmd__watch_commands] )) ||
_security-monitor__subcmd__help__subcmd__watch_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor help watch commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__insights_commands] )) ||
_security-monitor__subcmd__insights_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor insights commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__list_commands] )) ||
_security-monitor__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor list commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__metrics_commands] )) ||
_security-monitor__subcmd__metrics_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor metrics commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__profiles_commands] )) ||
_security-monitor__subcmd__profiles_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor profiles commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__reload_commands] )) ||
_security-monitor__subcmd__reload_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor reload commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__remove-firewall_commands] )) ||
_security-monitor__subcmd__remove-firewall_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor remove-firewall commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__restore_commands] )) ||
_security-monitor__subcmd__restore_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor restore commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__rules_commands] )) ||
_security-monitor__subcmd__rules_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor rules commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__run_commands] )) ||
_security-monitor__subcmd__run_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor run commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__status_commands] )) ||
_security-monitor__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor status commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__test-notify_commands] )) ||
_security-monitor__subcmd__test-notify_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor test-notify commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__unban_commands] )) ||
_security-monitor__subcmd__unban_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor unban commands' commands "$@"
}
(( $+functions[_security-monitor__subcmd__watch_commands] )) ||
_security-monitor__subcmd__watch_commands() {
    local commands; commands=()
    _describe -t commands 'security-monitor watch commands' commands "$@"
}

if [ "$funcstack[1]" = "_security-monitor" ]; then
    _security-monitor "$@"
else
    compdef _security-monitor security-monitor
fi
