//! The janus side of a migration: its Import service, with items grouped
//! into batches of bounded size.

use anyhow::{bail, Context};
use janus_etcd::pb::migration as pb;
use pb::import_client::ImportClient;
use tonic::transport::Channel;

pub struct Target {
    client: ImportClient<Channel>,
    url: String,
    pub max_item_bytes: usize,
    /// Store revision after the last batch.
    pub revision: i64,
}

/// gRPC's message limit for batches (janus accepts --max-request-bytes plus
/// etcd's 512 KiB allowance; a batch stays below the smaller of the two).
const MESSAGE_LIMIT: usize = 64 * 1024 * 1024;

impl Target {
    pub async fn connect(url: &str) -> anyhow::Result<Target> {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .with_context(|| format!("bad janus URL {url}"))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot reach janus at {url}"))?;
        let mut client = ImportClient::new(channel)
            .max_decoding_message_size(MESSAGE_LIMIT)
            .max_encoding_message_size(MESSAGE_LIMIT);
        let st = client
            .status(pb::StatusRequest {})
            .await
            .with_context(|| format!("janus at {url}: import status"))?
            .into_inner();
        Ok(Target {
            client,
            url: url.to_string(),
            max_item_bytes: st.max_item_bytes as usize,
            revision: st.revision,
        })
    }

    pub async fn status(&mut self) -> anyhow::Result<pb::StatusResponse> {
        Ok(self
            .client
            .status(pb::StatusRequest {})
            .await
            .with_context(|| format!("janus at {}: import status", self.url))?
            .into_inner())
    }

    /// Takes the migration lock, after checking that the source's oldest
    /// revision to import (`lowest`) is above what janus's revision will be
    /// (janus never goes back, D3): a refusal then changes nothing.
    pub async fn begin(&mut self, source: &str, force: bool, lowest: i64) -> anyhow::Result<()> {
        let st = self.status().await?;
        let base = st.revision + i64::from(st.live_keys > 0 && force);
        if lowest != 0 && lowest <= base {
            bail!(
                "the source's revisions start at {lowest}, not above janus's revision {base}: \
                 janus cannot go back to them (start from an empty janus); nothing was imported"
            );
        }
        let r = self
            .client
            .begin(pb::BeginRequest {
                source: source.to_string(),
                force,
            })
            .await
            .map_err(|s| anyhow::anyhow!("janus at {}: {}", self.url, s.message()))?;
        self.revision = r.into_inner().revision;
        Ok(())
    }

    /// The containers and TTL nodes janus holds under `prefix`.
    pub async fn kinds(&mut self, prefix: &str) -> anyhow::Result<Vec<pb::NodeKind>> {
        Ok(self
            .client
            .kinds(pb::KindsRequest {
                prefix: prefix.as_bytes().to_vec(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("janus at {}: node kinds: {}", self.url, s.message()))?
            .into_inner()
            .nodes)
    }

    pub async fn end(&mut self) -> anyhow::Result<()> {
        self.client
            .end(pb::EndRequest {})
            .await
            .map_err(|s| anyhow::anyhow!("janus at {}: {}", self.url, s.message()))?;
        Ok(())
    }

    /// Sends `items` in batches of at most `batch_bytes` each (a larger item
    /// alone); every batch raises the store revision to at least
    /// `revision`. Returns the items written.
    pub async fn apply(
        &mut self,
        items: Vec<pb::Item>,
        revision: i64,
        explicit_tree: bool,
        batch_bytes: usize,
        mut progress: impl FnMut(u64),
    ) -> anyhow::Result<u64> {
        let mut applied = 0;
        let mut batch = Vec::new();
        let mut size = 0usize;
        let mut rest = items.into_iter().peekable();
        while let Some(item) = rest.next() {
            size += item_size(&item);
            batch.push(item);
            let full = rest
                .peek()
                .is_some_and(|n| size + item_size(n) > batch_bytes);
            if full || rest.peek().is_none() {
                let n = batch.len() as u64;
                applied += self
                    .send(std::mem::take(&mut batch), revision, explicit_tree)
                    .await?;
                progress(n);
                size = 0;
            }
        }
        if applied == 0 && revision > self.revision {
            self.send(Vec::new(), revision, explicit_tree).await?;
        }
        Ok(applied)
    }

    async fn send(
        &mut self,
        items: Vec<pb::Item>,
        revision: i64,
        explicit_tree: bool,
    ) -> anyhow::Result<u64> {
        let r = self
            .client
            .apply(pb::Batch {
                revision,
                explicit_tree,
                items,
            })
            .await;
        match r {
            Ok(r) => {
                let r = r.into_inner();
                self.revision = r.revision;
                Ok(r.applied)
            }
            Err(s) => bail!("janus refused the import: {}", s.message()),
        }
    }
}

fn item_size(i: &pb::Item) -> usize {
    use pb::item::Kind;
    64 + match &i.kind {
        Some(Kind::Put(k)) => {
            k.key.len()
                + k.value.len()
                + k.znode
                    .as_ref()
                    .map_or(0, |z| z.acl.iter().map(|a| a.id.len() + 16).sum())
        }
        Some(Kind::Delete(d)) => d.key.len(),
        Some(Kind::Tree(t)) => t.path.len(),
        None => 0,
    }
}
