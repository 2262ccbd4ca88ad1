//! Device groups: static member lists, and filter groups whose members are the devices matching
//! their `DeviceFilter` (with the Autopilot group tags) at the time asked.

use async_trait::async_trait;
use redeploy_core::group::{DeviceFilter, Group, GroupKind};
use redeploy_core::ids::{DeviceId, GroupId};
use redeploy_core::store::{GroupStore, StoreError, StoreResult};
use time::OffsetDateTime;

use crate::devices::{device_select, row_device};
use crate::dialect::{Arg, Dialect, SqlRow};
use crate::sql::{sql, RowExt};
use crate::{SqlStore, Tx};

async fn insert_members<D: Dialect>(
    tx: &mut Tx<D>,
    id: GroupId,
    devices: &[DeviceId],
) -> StoreResult<()> {
    for d in devices {
        sql(
            "INSERT INTO group_members (group_id, device_id) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(*d)
        .execute(tx.on())
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => StoreError::NotFound(format!("device {d}")),
            other => other,
        })?;
    }
    Ok(())
}

/// The group to change the members of: `NotFound` if unknown, `Conflict` for a filter group.
async fn static_group_in<D: Dialect>(tx: &mut Tx<D>, id: GroupId) -> StoreResult<()> {
    let row = sql(format!(
        "SELECT filter FROM device_groups WHERE id = $1{}",
        D::FOR_UPDATE
    ))
    .bind(id)
    .fetch_optional(tx.on())
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("group {id}")))?;
    if row.json("filter")?.is_some() {
        return Err(StoreError::Conflict(format!(
            "group {id} is a filter group; its members follow the filter"
        )));
    }
    Ok(())
}

impl<D: Dialect> SqlStore<D> {
    async fn group_where(&self, col: &str, value: Arg) -> StoreResult<Option<Group>> {
        let Some(row) = sql(format!(
            "SELECT id, name, filter, created_at FROM device_groups WHERE {col} = $1"
        ))
        .bind(value)
        .fetch_optional(self.db())
        .await?
        else {
            return Ok(None);
        };
        let id: GroupId = row.id("id")?;
        let kind = match row.json("filter")? {
            Some(text) => GroupKind::Filter {
                filter: DeviceFilter::from_text(&text)?,
            },
            None => {
                let rows = sql(
                    "SELECT device_id FROM group_members WHERE group_id = $1 ORDER BY device_id",
                )
                .bind(id)
                .fetch_all(self.db())
                .await?;
                let members = rows
                    .iter()
                    .map(|r| r.id("device_id"))
                    .collect::<StoreResult<Vec<_>>>()?;
                GroupKind::Static { members }
            }
        };
        Ok(Some(Group {
            id,
            name: row.string("name")?,
            kind,
            created_at: row.at("created_at")?,
        }))
    }
}

#[async_trait]
impl<D: Dialect> GroupStore for SqlStore<D> {
    async fn create_group(&self, group: &Group) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let filter = match &group.kind {
            GroupKind::Filter { filter } => Some(filter.to_text()),
            GroupKind::Static { .. } => None,
        };
        sql("INSERT INTO device_groups (id, name, filter, created_at) VALUES ($1, $2, $3, $4)")
            .bind(group.id)
            .bind(group.name.clone())
            .bind(Arg::Json(filter))
            .bind(group.created_at)
            .execute(tx.on())
            .await?;
        if let GroupKind::Static { members } = &group.kind {
            insert_members(&mut tx, group.id, members).await?;
        }
        tx.commit().await
    }

    async fn group(&self, id: GroupId) -> StoreResult<Option<Group>> {
        self.group_where("id", id.into()).await
    }

    async fn group_by_name(&self, name: &str) -> StoreResult<Option<Group>> {
        self.group_where("name", name.into()).await
    }

    async fn list_groups(&self) -> StoreResult<Vec<Group>> {
        let rows = sql("SELECT id FROM device_groups ORDER BY name, id")
            .fetch_all(self.db())
            .await?;
        let mut groups = Vec::with_capacity(rows.len());
        for r in rows {
            let id: GroupId = r.id("id")?;
            if let Some(g) = self.group_where("id", id.into()).await? {
                groups.push(g);
            }
        }
        Ok(groups)
    }

    async fn rename_group(&self, id: GroupId, name: &str) -> StoreResult<()> {
        let changed = sql("UPDATE device_groups SET name = $2 WHERE id = $1")
            .bind(id)
            .bind(name)
            .execute(self.db())
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("group {id}")));
        }
        Ok(())
    }

    async fn delete_group(&self, id: GroupId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sql("DELETE FROM group_members WHERE group_id = $1")
            .bind(id)
            .execute(tx.on())
            .await?;
        let deleted = sql("DELETE FROM device_groups WHERE id = $1")
            .bind(id)
            .execute(tx.on())
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("group {id}")));
        }
        tx.commit().await
    }

    async fn add_group_members(&self, id: GroupId, devices: &[DeviceId]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        static_group_in(&mut tx, id).await?;
        insert_members(&mut tx, id, devices).await?;
        tx.commit().await
    }

    async fn remove_group_members(&self, id: GroupId, devices: &[DeviceId]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        static_group_in(&mut tx, id).await?;
        for d in devices {
            sql("DELETE FROM group_members WHERE group_id = $1 AND device_id = $2")
                .bind(id)
                .bind(*d)
                .execute(tx.on())
                .await?;
        }
        tx.commit().await
    }

    async fn group_member_ids(
        &self,
        id: GroupId,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<DeviceId>> {
        let group = self
            .group(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("group {id}")))?;
        match group.kind {
            GroupKind::Static { members } => Ok(members),
            GroupKind::Filter { filter } => {
                let rows = sql(format!("{} ORDER BY id", device_select()))
                    .fetch_all(self.db())
                    .await?;
                let tags = self.group_tags().await?;
                let mut ids = Vec::new();
                for r in &rows {
                    let d = row_device(r)?;
                    let tag = d
                        .serial
                        .as_deref()
                        .and_then(|s| tags.get(&s.to_uppercase()))
                        .map(String::as_str);
                    if filter.matches(&d, now, tag) {
                        ids.push(d.id);
                    }
                }
                Ok(ids)
            }
        }
    }
}
