//! The shadow step's one action: the service's shadow setting set (or cleared) through the
//! writer, like any change.

use switchyard_config::raw;

use super::Driver;
use crate::change::Change;
use crate::deploy::machine::Event;

impl Driver {
    /// Sets the service's shadow setting to `setting` (`None` clears it).
    pub(super) async fn set_shadow(&self, setting: Option<raw::Shadow>) -> Event {
        let clear = setting.is_none();
        match self
            .state
            .write(
                &self.rec.created_by,
                &self.rec.service,
                None,
                Change::SetShadow(setting.map(Box::new)),
            )
            .await
        {
            Ok(_) => Event::ShadowSet,
            Err(e) if clear => Event::Failed(format!("cannot end the shadow traffic: {e}")),
            Err(e) => Event::Failed(format!("cannot start the shadow traffic: {e}")),
        }
    }
}
