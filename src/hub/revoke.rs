//! Revocation: who may revoke what and until when, the record, and telling every device.

use super::*;

/// Whether `message` is the hub's own revocation tip (content type 1006),
/// which is not itself revocable.
pub(super) fn is_revoke_tip(message: &Message) -> bool {
    #[derive(Deserialize)]
    struct Content {
        r#type: Option<i64>,
    }
    message
        .client_msg_no
        .as_str()
        .starts_with(HUB_CLIENT_MSG_NO_PREFIX)
        && matches!(
            serde_json::from_slice::<Content>(&message.payload),
            Ok(Content {
                r#type: Some(crate::revoke::REVOKE_TIP_CONTENT_TYPE)
            })
        )
}

impl Hub {
    /// Revokes a message.
    ///
    /// The requester is authenticated by the host. The order: find the
    /// message (commands and transient messages are
    /// [`RevokeRefusal::NotRevocable`]) → ask the [`Authorizer`] with both
    /// users' roles → if already revoked, answer with the first record →
    /// check the window (unless the authorizer allowed any time) → record
    /// the revocation durably with the channel's next `extra_version` →
    /// only then send the `messageRevoke` command (sync_once) to every
    /// member's every device, and the type-1006 tip if configured.
    ///
    /// Two concurrent revocations of one message make one record and one
    /// command. The command and tip carry client_msg_nos derived from the
    /// message id, so a revocation retried after a crash between recording
    /// and telling sends what was missing, and nothing twice.
    ///
    /// Like a send, a revocation runs to the end in a task of its own: a
    /// caller that stops waiting cannot leave it recorded but untold (its
    /// retry would find the command already queued and deliver nothing).
    pub async fn revoke(&self, request: RevokeRequest) -> Result<RevokeOutcome> {
        let work = self.start_work()?;
        let hub = self.clone();
        run_to_end(async move {
            let _work = work;
            hub.revoke_now(request).await
        })
        .await
    }

    async fn revoke_now(&self, request: RevokeRequest) -> Result<RevokeOutcome> {
        let inner = &*self.inner;
        let requester = &request.requester;
        let message = match self.find_in_history(requester, &request.target).await {
            Err(Error::NotFound { .. }) if self.names_a_command(&request.target).await? => {
                return Err(Error::RevokeRefused(RevokeRefusal::NotRevocable))
            }
            found => found?,
        };
        if is_revoke_tip(&message) {
            return Err(Error::RevokeRefused(RevokeRefusal::NotRevocable));
        }
        let channel = &message.channel;
        let ctx = RevokeContext {
            requester,
            message: &message,
            requester_role: inner.directory.role(channel, requester).await?,
            sender_role: inner.directory.role(channel, &message.from_uid).await?,
        };
        let decision = inner.authorizer.authorize(&ctx).await?;
        if decision == Decision::Deny {
            return Err(Error::RevokeRefused(RevokeRefusal::NotPermitted));
        }
        if let Some(Some(first)) = inner
            .store
            .lookup_revocations(&[message.message_id])
            .await?
            .pop()
        {
            self.tell_revocation(&first, &message).await?;
            return Ok(RevokeOutcome::AlreadyRevoked(first));
        }
        let now_ms = inner.clock.now_ms();
        let window_ms = inner
            .config
            .revoke_window
            .map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX));
        let age = now_ms.saturating_sub(message.timestamp_ms);
        let expired = |window_ms: u64| i64::try_from(window_ms).is_ok_and(|w| age > w);
        if let Some(window_ms) =
            window_ms.filter(|w| decision != Decision::AllowAnyTime && expired(*w))
        {
            return Err(Error::RevokeRefused(RevokeRefusal::WindowExpired {
                sent_at_ms: message.timestamp_ms,
                window_ms,
                now_ms,
            }));
        }
        let recorded = inner
            .store
            .record_revocation(NewRevocation {
                message_id: message.message_id,
                channel: channel.clone(),
                message_seq: message.message_seq,
                revoker: requester.clone(),
                revoked_at_ms: now_ms,
            })
            .await?;
        let record = recorded.revocation().clone();
        self.tell_revocation(&record, &message).await?;
        Ok(match recorded {
            Recorded::New(_) => RevokeOutcome::Revoked(record),
            Recorded::Existing(_) => RevokeOutcome::AlreadyRevoked(record),
        })
    }

    /// The history message `target` names, as `requester` addresses its
    /// channel; [`Error::NotFound`] when there is none (see
    /// [`names_a_command`](Self::names_a_command) to tell why).
    pub(super) async fn find_in_history(
        &self,
        requester: &Uid,
        target: &RevokeTarget,
    ) -> Result<Message> {
        let store = &self.inner.store;
        let found = match target {
            RevokeTarget::MessageId(MessageId(0)) => None,
            RevokeTarget::MessageId(id) => store.get(*id).await?,
            RevokeTarget::ClientMsgNo {
                from_uid,
                channel,
                client_msg_no,
            } => {
                let channel = channel.stored_for(requester)?;
                store
                    .get_by_client_msg_no(from_uid, &channel, client_msg_no)
                    .await?
            }
            RevokeTarget::Seq { channel, seq } => {
                let channel = channel.stored_for(requester)?;
                store
                    .read(&channel, Page::forward(*seq, 1))
                    .await?
                    .into_iter()
                    .find(|m| m.message_seq == *seq)
            }
        };
        found.ok_or_else(|| Error::not_found(target.to_string()))
    }

    /// Whether `target` names a command or no message at all (id 0): not
    /// something in history.
    pub(super) async fn names_a_command(&self, target: &RevokeTarget) -> Result<bool> {
        Ok(match target {
            RevokeTarget::MessageId(MessageId(0)) => true,
            RevokeTarget::MessageId(id) => self.inner.store.is_command(*id).await?,
            _ => false,
        })
    }

    /// Sends the revocation command (and tip) for `record`, idempotently:
    /// what was sent before is recognised by its client_msg_no and not sent
    /// again.
    async fn tell_revocation(&self, record: &Revocation, message: &Message) -> Result<()> {
        let inner = &*self.inner;
        let recipients = self.recipients_of(&record.channel).await?;
        let now_ms = inner.clock.now_ms();
        let command = Message {
            message_id: inner.ids.next_id(),
            message_seq: 0,
            client_msg_no: ClientMsgNo::new(format!(
                "{HUB_CLIENT_MSG_NO_PREFIX}revoke:{}",
                record.message_id
            ))?,
            from_uid: record.revoker.clone(),
            channel: record.channel.clone(),
            timestamp_ms: now_ms,
            flags: Flags::command(),
            setting: Setting::default(),
            topic: None,
            payload: revoke_command_payload(record, &message.client_msg_no).into(),
        };
        self.dispatch(
            command,
            Persistence::Command,
            recipients.clone(),
            None,
            true,
        )
        .await?;
        if inner.config.revoke_tip {
            let name = inner
                .directory
                .display_name(&record.revoker)
                .await?
                .unwrap_or_else(|| record.revoker.to_string());
            let tip = Message {
                message_id: inner.ids.next_id(),
                message_seq: 0,
                client_msg_no: ClientMsgNo::new(format!(
                    "{HUB_CLIENT_MSG_NO_PREFIX}revoke-tip:{}",
                    record.message_id
                ))?,
                from_uid: record.revoker.clone(),
                channel: record.channel.clone(),
                timestamp_ms: now_ms,
                flags: Flags {
                    red_dot: false,
                    ..Flags::normal()
                },
                setting: Setting::default(),
                topic: None,
                payload: revoke_tip_payload(record, &name).into(),
            };
            self.dispatch(tip, Persistence::History, recipients, None, true)
                .await?;
        }
        Ok(())
    }
}
