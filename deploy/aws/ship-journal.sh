#!/usr/bin/env bash
# Ships the journal of chief's processes to CloudWatch Logs: run by the launch templates'
# user data (deploy/aws/chief.yaml) as root on Amazon Linux 2023.
#
#   ship-journal.sh LOG_GROUP PROGRAM...
#
# The CloudWatch agent reads files, not the journal, so rsyslog (reading the journal with
# imjournal) writes each PROGRAM's lines, as the program wrote them (JSON with
# --log-format json), to /var/log/chief/PROGRAM.log, and systemd's own lines about
# chief's units (started, exited, killed by the watchdog) to /var/log/chief/systemd.log.
# The agent sends each file to LOG_GROUP, stream INSTANCE_ID/PROGRAM. logrotate keeps a
# week on disk. The instance role needs logs:CreateLogStream, logs:PutLogEvents and
# logs:DescribeLogStreams on LOG_GROUP (deploy/aws/iam/bootstrap-*.json).
#
# CHIEF_SHIP_JOURNAL_ROOT=DIR writes the files under DIR and installs/starts nothing
# (what the deploy checks run).
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: ship-journal.sh LOG_GROUP PROGRAM..." >&2
    exit 2
fi
group=$1
shift
programs=("$@" systemd)
root=${CHIEF_SHIP_JOURNAL_ROOT:-}
agent_config=/opt/aws/amazon-cloudwatch-agent/etc/chief-journal.json

for p in "$@"; do
    [[ $p =~ ^chief-[a-z0-9-]+$ ]] || { echo "ship-journal: $p is not a chief program" >&2; exit 2; }
done

if [[ -z $root ]]; then
    dnf install -y -q rsyslog logrotate amazon-cloudwatch-agent
fi
install -d -m 0755 "$root/etc/rsyslog.d" "$root/etc/logrotate.d" "$(dirname "$root$agent_config")"
install -d -m 0750 "$root/var/log/chief"

# rsyslog: one file per chief program, the message alone on each line.
{
    echo '# chief (deploy/aws/ship-journal.sh): each chief program to /var/log/chief/PROGRAM.log'
    echo 'template(name="chief-line" type="list") { property(name="msg" droplastlf="on") constant(value="\n") }'
    echo 'template(name="chief-stamped" type="list") {'
    echo '  property(name="timereported" dateFormat="rfc3339") constant(value=" ")'
    echo '  property(name="msg" droplastlf="on") constant(value="\n")'
    echo '}'
    for p in "$@"; do
        echo "if \$programname == \"$p\" then {"
        echo "  action(type=\"omfile\" file=\"/var/log/chief/$p.log\" template=\"chief-line\" fileCreateMode=\"0640\")"
        echo "  stop"
        echo "}"
    done
    echo 'if $programname == "systemd" and $msg contains "chief-" then {'
    echo '  action(type="omfile" file="/var/log/chief/systemd.log" template="chief-stamped" fileCreateMode="0640")'
    echo '}'
} > "$root/etc/rsyslog.d/10-chief.conf"

cat > "$root/etc/logrotate.d/chief" <<'EOF'
/var/log/chief/*.log {
    daily
    rotate 7
    maxsize 100M
    compress
    delaycompress
    missingok
    notifempty
    copytruncate
}
EOF

# The CloudWatch agent: one collect_list entry per file.
{
    printf '{\n  "agent": {"run_as_user": "root"},\n  "logs": {\n    "logs_collected": {\n      "files": {\n        "collect_list": [\n'
    n=${#programs[@]}
    for i in "${!programs[@]}"; do
        p=${programs[$i]}
        sep=,
        [[ $((i + 1)) -eq $n ]] && sep=
        printf '          {"file_path": "/var/log/chief/%s.log", "log_group_name": "%s", "log_stream_name": "{instance_id}/%s", "timezone": "UTC"}%s\n' "$p" "$group" "$p" "$sep"
    done
    printf '        ]\n      }\n    }\n  }\n}\n'
} > "$root$agent_config"

if [[ -z $root ]]; then
    systemctl enable --now rsyslog
    systemctl restart rsyslog
    /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c "file:$agent_config"
fi
echo "ship-journal: ${programs[*]} → CloudWatch Logs $group"
