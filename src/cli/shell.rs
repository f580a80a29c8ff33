//! `omendb sql`: an interactive shell (rustyline: line editing, history in
//! `~/.omendb_history`), or SQL from `-c`, a file or standard input.
//!
//! Input is read line by line: a line starting with `\` is a shell command (`\d`, `\d TABLE`,
//! `\timing`, `\q`, `\?`); other lines accumulate until one ends with `;` (or the input
//! ends), then the statements run one by one, each printing its result.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use omendb::{Db, DbOptions};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use super::config::DEFAULT_DIR;
use super::{CliError, Config, SqlArgs, format, statements};

const HELP: &str = "\
\\d            list tables
\\d TABLE      describe a table
\\timing       toggle printing each statement's run time
\\q            quit
\\?            this help
SQL statements end with ';'. EXPLAIN shows the route (omendb_route rows).";

/// The shell's state.
struct Shell<'a, W: Write> {
    db: &'a Db,
    out: W,
    timing: bool,
    buffer: String,
    failed: bool,
    quit: bool,
}

impl<W: Write> Shell<'_, W> {
    /// Feeds one input line; runs what it completes.
    fn line(&mut self, line: &str) -> Result<(), CliError> {
        let trimmed = line.trim();
        if self.buffer.trim().is_empty() && trimmed.starts_with('\\') {
            self.buffer.clear();
            return self.meta(trimmed);
        }
        self.buffer.push_str(line);
        self.buffer.push('\n');
        if trimmed.ends_with(';') {
            self.flush()?;
        }
        Ok(())
    }

    /// Runs the accumulated statements.
    fn flush(&mut self) -> Result<(), CliError> {
        let text = std::mem::take(&mut self.buffer);
        if text.trim().trim_matches(';').trim().is_empty() {
            return Ok(());
        }
        self.sql(&text)
    }

    /// Runs SQL text, each statement on its own.
    fn sql(&mut self, text: &str) -> Result<(), CliError> {
        let parsed = match statements::split(text) {
            Ok(parsed) => parsed,
            Err(error) => return self.error(&error),
        };
        for statement in parsed {
            let started = Instant::now();
            let printed = self
                .db
                .sql_parsed_with(statement.ast, &omendb::Interrupt::new())
                .and_then(|result| format::result(statement.kind, &result.batches));
            match printed {
                Ok(text) => writeln!(self.out, "{text}").map_err(write_error)?,
                Err(error) => {
                    // Like psql: report, then go on with the next statement.
                    self.error(&error)?;
                    continue;
                }
            }
            if self.timing {
                let ms = started.elapsed().as_secs_f64() * 1e3;
                writeln!(self.out, "Time: {ms:.3} ms").map_err(write_error)?;
            }
        }
        Ok(())
    }

    fn error(&mut self, error: &omendb::Error) -> Result<(), CliError> {
        self.failed = true;
        self.out.flush().map_err(write_error)?;
        eprintln!("ERROR: {error}");
        Ok(())
    }

    /// A backslash command.
    fn meta(&mut self, command: &str) -> Result<(), CliError> {
        let mut words = command.split_whitespace();
        let text = match (words.next().unwrap_or(""), words.next()) {
            ("\\q" | "\\quit", _) => {
                self.quit = true;
                return Ok(());
            }
            ("\\d" | "\\dt", None) => format::list_tables(self.db),
            ("\\d", Some(table)) => match format::describe(self.db, table.trim_end_matches(';')) {
                Ok(text) => text,
                Err(error) => return self.error(&error),
            },
            ("\\timing", arg) => {
                self.timing = match arg {
                    Some("on") => true,
                    Some("off") => false,
                    _ => !self.timing,
                };
                format!("Timing is {}.", if self.timing { "on" } else { "off" })
            }
            ("\\?" | "\\h" | "\\help", _) => HELP.to_string(),
            (other, _) => {
                self.failed = true;
                eprintln!("invalid command {other}; try \\? for help");
                return Ok(());
            }
        };
        writeln!(self.out, "{text}").map_err(write_error)
    }
}

fn write_error(e: std::io::Error) -> CliError {
    CliError::io("write to standard output", e)
}

/// Runs `omendb sql`.
pub fn run(config: &Config, args: SqlArgs) -> Result<(), CliError> {
    let dir = config.dir(args.dir.as_deref(), DEFAULT_DIR);
    let db = Db::open(&dir, DbOptions::default())?;
    tracing::info!(dir = %dir.display(), "opened the database");
    let stdout = std::io::stdout();
    let mut shell = Shell {
        db: &db,
        out: stdout.lock(),
        timing: args.timing,
        buffer: String::new(),
        failed: false,
        quit: false,
    };
    let outcome = if let Some(command) = &args.command {
        if command.trim_start().starts_with('\\') {
            shell.meta(command.trim())
        } else {
            shell.sql(command)
        }
    } else if let Some(file) = args.file.as_deref().filter(|f| *f != Path::new("-")) {
        let text = std::fs::File::open(file)
            .map_err(|e| CliError::io(format!("open {}", file.display()), e))?;
        feed(&mut shell, std::io::BufReader::new(text))
    } else if args.file.is_none() && std::io::stdin().is_terminal() {
        interactive(&mut shell)
    } else {
        feed(&mut shell, std::io::stdin().lock())
    };
    let failed = shell.failed;
    drop(shell);
    db.close()?;
    outcome?;
    if failed {
        return Err(CliError::Usage(
            "some statements failed (see above)".to_string(),
        ));
    }
    Ok(())
}

/// Runs every line of `input`.
fn feed<W: Write>(shell: &mut Shell<'_, W>, input: impl BufRead) -> Result<(), CliError> {
    for line in input.lines() {
        let line = line.map_err(|e| CliError::io("read the SQL input", e))?;
        shell.line(&line)?;
        if shell.quit {
            return Ok(());
        }
    }
    shell.flush()
}

fn history_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".omendb_history"))
}

/// The interactive loop.
fn interactive<W: Write>(shell: &mut Shell<'_, W>) -> Result<(), CliError> {
    let mut editor = DefaultEditor::new()?;
    let history = history_file();
    if let Some(path) = &history {
        // A missing history file is normal on first use.
        let _ = editor.load_history(path);
    }
    writeln!(
        shell.out,
        "omendb {} — type \\? for help, \\q to quit.",
        env!("CARGO_PKG_VERSION")
    )
    .map_err(write_error)?;
    shell.out.flush().map_err(write_error)?;
    loop {
        let prompt = if shell.buffer.is_empty() {
            "omendb=> "
        } else {
            "omendb-> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                shell.line(&line)?;
                shell.out.flush().map_err(write_error)?;
                // Errors in a session are reported, not fatal.
                shell.failed = false;
                if shell.quit {
                    break;
                }
            }
            // Ctrl-C drops the statement being typed, as in psql.
            Err(ReadlineError::Interrupted) => shell.buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(error.into()),
        }
    }
    if let Some(path) = &history
        && let Err(error) = editor.save_history(path)
    {
        tracing::warn!(path = %path.display(), %error, "could not save the shell history");
    }
    Ok(())
}
