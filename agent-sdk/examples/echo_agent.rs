//! A complete agent in a screenful: claims tasks from the given pools (all pools by default),
//! heartbeats while it works, completes each with a small result, and reads its mail.
//!
//! ```sh
//! mailroom init --root /tmp/mr && mailroom run --root /tmp/mr &
//! echo '{"task_id":"E-1","task_type":"echo","params":{"say":"hi"}}' | mailroom --root /tmp/mr submit -
//! cargo run -p mailroom-agent-sdk --example echo_agent -- /tmp/mr Agent-1 echo
//! ```

use mailroom_agent_sdk::{Agent, Error, Inbound};
use std::time::Duration;

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let root = mailroom_agent_sdk::default_root(args.next().as_deref().map(std::path::Path::new));
    let name = args.next().unwrap_or_else(|| "Agent-1".to_string());
    let pools: Vec<String> = args.collect();
    let agent = Agent::register(&root, &name)?; // registers the agent on first use
    eprintln!("{name}: waiting for tasks in {} (idle 10 s ends the run)", root.display());
    while let Some(claim) = agent.claim_wait(&pools, Duration::from_secs(10))? {
        // Real work goes here; heartbeat more often than the lease (300 s by default).
        agent.heartbeat(&claim.name)?;
        let result = serde_json::json!({"echo": claim.task.params, "by": name});
        match agent.complete(&claim.name, result) {
            Ok(_) => println!("completed {}", claim.task.task_id),
            // The lease ran out and the task went back to the pool: someone else will do it.
            Err(Error::ClaimLost { .. }) => eprintln!("lost {}", claim.task.task_id),
            Err(e) => return Err(e),
        }
        for item in agent.read_mail()? {
            match item {
                Inbound::Mail(m) => println!("mail from {}: {}", m.from, m.body),
                Inbound::Notice(n) => eprintln!("notice ({:?}): {}", n.notice, n.reason),
                Inbound::Other { name, .. } => eprintln!("unrecognised file {name}"),
            }
        }
    }
    Ok(())
}
