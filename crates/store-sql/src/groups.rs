//! Device groups: static member lists, and filter groups whose members are the devices matching
//! their `DeviceFilter` (with the Autopilot group tags) at the time asked.

use async_trait::async_trait;
use redeploy_core::group::{DeviceFilter, Group, GroupKind};
use redeploy_core::ids::{DeviceId, GroupId};
use redeploy_core::store::{GroupStore, StoreError, StoreResult};
use sea_query::{Alias, Expr, LockType, OnConflict, Order, Query, SimpleExpr};
use time::OffsetDateTime;

use crate::bulk::insert_rows_or;
use crate::devices::{row_device, select_devices};
use crate::dialect::{Arg, Dialect, SqlRow};
use crate::query::{built, insert_row, v};
use crate::schema::{DeviceGroups as G, Devices as Dv, GroupMembers as M};
use crate::sql::RowExt;
use crate::{SqlStore, Tx};

async fn insert_members<D: Dialect>(
    tx: &mut Tx<D>,
    id: GroupId,
    devices: &[DeviceId],
) -> StoreResult<()> {
    // The unknown device is named before anything is inserted (a multi-row INSERT's foreign-key
    // error would not say which).
    for chunk in devices.chunks(500) {
        let select = Query::select()
            .column(Dv::Id)
            .from(Dv::Table)
            .and_where(Expr::col(Dv::Id).is_in(chunk.iter().map(|d| v(*d))))
            .to_owned();
        let known: std::collections::HashSet<DeviceId> = built::<D>(&select)?
            .fetch_all(tx.on())
            .await?
            .iter()
            .map(|r| r.id("id"))
            .collect::<StoreResult<_>>()?;
        if let Some(d) = chunk.iter().find(|d| !known.contains(d)) {
            return Err(StoreError::NotFound(format!("device {d}")));
        }
    }
    let rows: Vec<(GroupId, DeviceId)> = devices.iter().map(|d| (id, *d)).collect();
    insert_rows_or(
        tx,
        M::Table,
        [M::GroupId, M::DeviceId],
        &rows,
        |(g, d)| [v(*g), v(*d)],
        Some(OnConflict::new().do_nothing().to_owned()),
    )
    .await
}

/// The group to change the members of: `NotFound` if unknown, `Conflict` for a filter group.
async fn static_group_in<D: Dialect>(tx: &mut Tx<D>, id: GroupId) -> StoreResult<()> {
    // sea-query writes the row lock only for PostgreSQL, as `D::FOR_UPDATE` does.
    let select = Query::select()
        .column(G::Filter)
        .from(G::Table)
        .and_where(Expr::col(G::Id).eq(v(id)))
        .lock(LockType::Update)
        .to_owned();
    let row = built::<D>(&select)?
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
    async fn group_where(&self, col: G, value: SimpleExpr) -> StoreResult<Option<Group>> {
        let select = Query::select()
            .columns([G::Id, G::Name, G::Filter, G::CreatedAt])
            .from(G::Table)
            .and_where(Expr::col(col).eq(value))
            .to_owned();
        let Some(row) = built::<D>(&select)?.fetch_optional(self.db()).await? else {
            return Ok(None);
        };
        let id: GroupId = row.id("id")?;
        let kind = match row.json("filter")? {
            Some(text) => GroupKind::Filter {
                filter: DeviceFilter::from_text(&text)?,
            },
            None => {
                // One row of the ids joined, not a row per member: 100,000 rows cost the
                // server 60–75 ms to take apart, their text 5 (docs/benchmarks.md, session 16).
                let select = Query::select()
                    .expr_as(Expr::cust(D::join_ids("device_id")), Alias::new("ids"))
                    .from(M::Table)
                    .and_where(Expr::col(M::GroupId).eq(v(id)))
                    .to_owned();
                let row = built::<D>(&select)?.fetch_one(self.db()).await?;
                let mut members = row.joined_ids("ids")?;
                members.sort_unstable();
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
        let insert = insert_row(
            G::Table,
            [G::Id, G::Name, G::Filter, G::CreatedAt],
            [
                v(group.id),
                v(group.name.clone()),
                v(Arg::Json(filter)),
                v(group.created_at),
            ],
        )?;
        built::<D>(&insert)?.execute(tx.on()).await?;
        if let GroupKind::Static { members } = &group.kind {
            insert_members(&mut tx, group.id, members).await?;
        }
        tx.commit().await
    }

    async fn group(&self, id: GroupId) -> StoreResult<Option<Group>> {
        self.group_where(G::Id, v(id)).await
    }

    async fn group_by_name(&self, name: &str) -> StoreResult<Option<Group>> {
        self.group_where(G::Name, v(name)).await
    }

    async fn list_groups(&self) -> StoreResult<Vec<Group>> {
        let select = Query::select()
            .column(G::Id)
            .from(G::Table)
            .order_by(G::Name, Order::Asc)
            .order_by(G::Id, Order::Asc)
            .to_owned();
        let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
        let mut groups = Vec::with_capacity(rows.len());
        for r in rows {
            let id: GroupId = r.id("id")?;
            if let Some(g) = self.group_where(G::Id, v(id)).await? {
                groups.push(g);
            }
        }
        Ok(groups)
    }

    async fn rename_group(&self, id: GroupId, name: &str) -> StoreResult<()> {
        let update = Query::update()
            .table(G::Table)
            .value(G::Name, v(name))
            .and_where(Expr::col(G::Id).eq(v(id)))
            .to_owned();
        let changed = built::<D>(&update)?.execute(self.db()).await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("group {id}")));
        }
        Ok(())
    }

    async fn delete_group(&self, id: GroupId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let members = Query::delete()
            .from_table(M::Table)
            .and_where(Expr::col(M::GroupId).eq(v(id)))
            .to_owned();
        built::<D>(&members)?.execute(tx.on()).await?;
        let group = Query::delete()
            .from_table(G::Table)
            .and_where(Expr::col(G::Id).eq(v(id)))
            .to_owned();
        let deleted = built::<D>(&group)?.execute(tx.on()).await?;
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
            let delete = Query::delete()
                .from_table(M::Table)
                .and_where(Expr::col(M::GroupId).eq(v(id)))
                .and_where(Expr::col(M::DeviceId).eq(v(*d)))
                .to_owned();
            built::<D>(&delete)?.execute(tx.on()).await?;
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
                let select = select_devices().order_by(Dv::Id, Order::Asc).to_owned();
                let rows = built::<D>(&select)?.fetch_all(self.db()).await?;
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
