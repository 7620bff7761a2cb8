//! What a launch template's user data script does, read from its text: the files it writes
//! with `cat > FILE <<'EOF'` heredocs (and the `CHIEF__` settings in them), the files of
//! the release tarball it installs (`"$release/…"`), and the AWS CLI calls it makes.

/// A file written by a quoted heredoc: `cat > PATH <<'EOF'` … `EOF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// The path.
    pub path: String,
    /// The lines written.
    pub body: Vec<String>,
}

/// Every file written by a quoted heredoc (`<<'EOF'`: no shell expansion inside).
pub fn written_files(script: &str) -> Vec<WrittenFile> {
    let mut out = Vec::new();
    let mut lines = script.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("cat > ") else {
            continue;
        };
        let Some((path, marker)) = rest.split_once(" <<") else {
            continue;
        };
        let marker = marker.trim();
        if !(marker.starts_with('\'') && marker.ends_with('\'')) {
            continue;
        }
        let marker = marker.trim_matches('\'');
        let body: Vec<String> = lines
            .by_ref()
            .take_while(|l| l.trim_end() != marker)
            .map(str::to_owned)
            .collect();
        out.push(WrittenFile {
            path: path.trim().to_owned(),
            body,
        });
    }
    out
}

/// The `CHIEF__KEY=value` settings of an environment file or a systemd drop-in
/// (`Environment=CHIEF__KEY=value`, or several assignments on one line, quoted as systemd
/// quotes them: `Environment="CHIEF__A=x y" CHIEF__B=z`).
pub fn chief_settings(body: &[String]) -> Vec<(String, String)> {
    body.iter()
        .map(|l| l.trim())
        .flat_map(|l| match l.strip_prefix("Environment=") {
            Some(assignments) => systemd_words(assignments),
            None => vec![l.to_owned()],
        })
        .filter(|l| l.starts_with("CHIEF__"))
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// The words of a systemd setting's value as systemd splits them (`Environment=`):
/// separated by whitespace, `"…"` and `'…'` group, a backslash escapes the next character.
pub fn systemd_words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                in_word = true;
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                in_word = true;
                quote = Some(c);
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The `CHIEF__KEY=value` lines appended to files with `printf 'CHIEF__KEY=%s\n' ARGS >>
/// FILE` (settings known only at boot, such as passwords read from Secrets Manager):
/// (file, key, value), each `%s` replaced by its argument, a shell variable (`"$x"`) by
/// `<$x>`.
pub fn appended_settings(script: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for line in script.lines() {
        let t = line.trim();
        let Some(rest) = t.strip_prefix("printf '") else {
            continue;
        };
        let Some((format, rest)) = rest.split_once('\'') else {
            continue;
        };
        let Some((args, file)) = rest.split_once(">>") else {
            continue;
        };
        let mut args = args.split_whitespace().map(|a| {
            let a = a.trim_matches(|c| c == '\'' || c == '"');
            if a.starts_with('$') {
                format!("<{a}>")
            } else {
                a.to_owned()
            }
        });
        let mut text = String::new();
        let mut pieces = format.split("%s").peekable();
        while let Some(piece) = pieces.next() {
            text.push_str(piece);
            if pieces.peek().is_some() {
                text.push_str(&args.next().unwrap_or_default());
            }
        }
        let text = text.trim_end_matches("\\n");
        if let Some((key, value)) = text.split_once('=')
            && key.starts_with("CHIEF__")
        {
            out.push((file.trim().to_owned(), key.to_owned(), value.to_owned()));
        }
    }
    out
}

/// An AWS CLI call: `aws <service> <command> [args…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliCall {
    /// `s3`, `secretsmanager`.
    pub service: String,
    /// `cp`, `get-secret-value`.
    pub command: String,
    /// The rest of the words, quotes removed.
    pub args: Vec<String>,
}

impl CliCall {
    /// The value after `--name`.
    pub fn option(&self, name: &str) -> Option<&str> {
        let at = self.args.iter().position(|a| a == name)?;
        self.args.get(at + 1).map(String::as_str)
    }
}

/// Every `aws …` command in the script (at the start of a line or of a `$(…)`).
pub fn cli_calls(script: &str) -> Vec<CliCall> {
    let mut out = Vec::new();
    for line in script.lines() {
        let mut rest = line;
        loop {
            let at = if rest.trim_start().starts_with("aws ") {
                Some(rest.len() - rest.trim_start().len())
            } else {
                rest.find("$(aws ").map(|i| i + 2)
            };
            let Some(at) = at else { break };
            let cmd = &rest[at..];
            let end = cmd.find(')').unwrap_or(cmd.len());
            let words: Vec<String> = cmd[..end]
                .split_whitespace()
                .map(|w| w.trim_matches(|c| c == '\'' || c == '"').to_owned())
                .collect();
            if words.len() >= 3 {
                out.push(CliCall {
                    service: words[1].clone(),
                    command: words[2].clone(),
                    args: words[3..].to_vec(),
                });
            }
            rest = &cmd[end..];
        }
    }
    out
}

/// The paths inside the release tarball that the script installs: each `"$release/PATH"`,
/// with `$name` expanded over the script's `for name in …; do` lists.
pub fn release_paths(script: &str) -> Vec<String> {
    let mut loops: Vec<(String, Vec<String>)> = Vec::new();
    let mut out = Vec::new();
    for line in script.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("for ")
            && let Some((var, list)) = rest.split_once(" in ")
            && let Some(list) = list.strip_suffix("; do")
        {
            loops.push((
                var.to_owned(),
                list.split_whitespace().map(str::to_owned).collect(),
            ));
        }
        if t == "done" {
            loops.pop();
        }
        let mut rest = t;
        while let Some(at) = rest.find("\"$release/") {
            let after = &rest[at + "\"$release/".len()..];
            let end = after.find('"').unwrap_or(after.len());
            let path = &after[..end];
            let mut expanded = vec![path.to_owned()];
            for (var, values) in &loops {
                let needle = format!("${var}");
                if path.contains(&needle) {
                    expanded = expanded
                        .iter()
                        .flat_map(|p| values.iter().map(|v| p.replace(&needle, v)))
                        .collect();
                }
            }
            out.extend(expanded);
            rest = &after[end..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = r#"#!/bin/bash
release=$(mktemp -d)
aws s3 cp --only-show-errors --region eu-west-1 "s3://rel/key.tar.gz" "$release/chief.tar.gz"
for name in a b; do
  install -m 0755 "$release/bin/chief-$name" /usr/local/bin/
done
install -m 0640 "$release/config/loader.toml" /etc/chief/
search=$(aws secretsmanager get-secret-value --region eu-west-1 --secret-id 'arn:x' --query SecretString --output text)
cat > /etc/chief/chief.env <<'EOF'
CHIEF__AWS__REGION=eu-west-1
# comment
EOF
cat > /etc/x.service.d/stack.conf <<'EOF'
[Service]
Environment=CHIEF__CONSUMER__STREAM=s
EOF
cat > /tmp/unquoted <<EOF
$x
EOF
printf 'CHIEF__ELASTICSEARCH__PASSWORD=%s\n' "$search_password" >> /etc/chief/chief.env
printf 'CHIEF__DATABASE__URL=mysql://u:%s@%s:%s/chief\n' "$pw" 'db.example' '3306' >> /etc/chief/loader.env
"#;

    #[test]
    fn drop_in_assignments_are_split_and_unquoted_as_systemd_does() {
        let body = vec![
            "[Service]".to_owned(),
            "Environment=CHIEF__A=1".to_owned(),
            r#"Environment="CHIEF__ALERT=[{ name = \"errors\", to = [\"a@b\"] }]" CHIEF__B='x y'"#
                .to_owned(),
        ];
        assert_eq!(
            chief_settings(&body),
            vec![
                ("CHIEF__A".to_owned(), "1".to_owned()),
                (
                    "CHIEF__ALERT".to_owned(),
                    r#"[{ name = "errors", to = ["a@b"] }]"#.to_owned()
                ),
                ("CHIEF__B".to_owned(), "x y".to_owned()),
            ]
        );
    }

    #[test]
    fn files_settings_calls_and_paths() {
        let files = written_files(SCRIPT);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path, "/etc/chief/chief.env");
        assert_eq!(
            chief_settings(&files[0].body),
            [("CHIEF__AWS__REGION".to_owned(), "eu-west-1".to_owned())]
        );
        assert_eq!(
            chief_settings(&files[1].body),
            [("CHIEF__CONSUMER__STREAM".to_owned(), "s".to_owned())]
        );
        let calls = cli_calls(SCRIPT);
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].service.as_str(), calls[0].command.as_str()),
            ("s3", "cp")
        );
        assert_eq!(calls[0].args[3], "s3://rel/key.tar.gz");
        assert_eq!(calls[1].option("--secret-id"), Some("arn:x"));
        assert_eq!(
            appended_settings(SCRIPT),
            [
                (
                    "/etc/chief/chief.env".to_owned(),
                    "CHIEF__ELASTICSEARCH__PASSWORD".to_owned(),
                    "<$search_password>".to_owned()
                ),
                (
                    "/etc/chief/loader.env".to_owned(),
                    "CHIEF__DATABASE__URL".to_owned(),
                    "mysql://u:<$pw>@db.example:3306/chief".to_owned()
                ),
            ]
        );
        assert_eq!(
            release_paths(SCRIPT),
            [
                "chief.tar.gz",
                "bin/chief-a",
                "bin/chief-b",
                "config/loader.toml"
            ]
        );
    }
}
