//! `mailroom status`: whether a broker runs on the root and what waits where (the library's
//! `views::status`, shared with the HTTP API), as text or JSON.

use super::exit::{self, Failure};
use super::io::{emit, print_json, to_json};
use mailroom::views::status;
use runtime_layout::{Fs, Layout};

/// `mailroom status`: exit 0 when a broker runs, [`exit::UNANSWERED`] when none does.
pub fn status(fs: &dyn Fs, layout: &Layout, json: bool) -> Result<(), Failure> {
    let st = status::read(fs, layout, runtime_layout::now())?;
    if json {
        print_json(&to_json(&st)?)?;
    } else {
        emit(&st.render())?;
    }
    if st.broker.running { Ok(()) } else { Err(Failure::new(exit::UNANSWERED, "")) }
}
