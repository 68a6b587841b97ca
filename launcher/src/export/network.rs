//! The network half of `mcp-warden export`: a NetworkPolicy for what addresses and ports can say
//! (no ingress but the profile's bind ports; egress to the address and port rules, to any address
//! outside the `deny` ranges on a bare port, and to the cluster DNS when the server resolves
//! names), and, on request, a CiliumNetworkPolicy that adds the host names (`toFQDNs`).

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use crate::plan::Plan;
use crate::profile::IpNet;

use super::Export;

pub fn network_policy(plan: &Plan, export: &Export) -> NetworkPolicy {
    let net = plan.net();
    let mut egress = Vec::new();
    // A bare port reaches any address outside the `deny` ranges, as the broker checks it.
    let deny: Vec<IpNet> = net.deny.iter().map(|d| d.value).collect();
    let anywhere: Vec<NetworkPolicyPeer> =
        [("0.0.0.0/0", false), ("::/0", true)].iter().filter_map(|(all, v6)| anywhere_but(all, &deny, *v6)).collect();
    let bare_udp: Vec<u16> = net.udp_rules.iter().filter(|r| r.value.addr.is_none()).map(|r| r.value.port).collect();
    for (ports, proto) in [(net.connect_any.iter().copied().collect::<Vec<_>>(), "TCP"), (bare_udp, "UDP")] {
        if !ports.is_empty() && !anywhere.is_empty() {
            let ports = Some(ports.iter().map(|p| port(proto, *p)).collect());
            egress.push(NetworkPolicyEgressRule { to: Some(anywhere.clone()), ports });
        }
    }
    // `udp = true` without destinations: every UDP port, outside the `deny` ranges.
    if net.broker.as_ref().is_some_and(|b| b.udp_any) && !anywhere.is_empty() {
        let every_port = NetworkPolicyPort { protocol: Some("UDP".into()), port: None, end_port: None };
        egress.push(NetworkPolicyEgressRule { to: Some(anywhere.clone()), ports: Some(vec![every_port]) });
    }
    for (rules, proto) in [(&net.address_rules, "TCP"), (&net.udp_rules, "UDP")] {
        for r in rules.iter().filter(|r| r.value.host.is_none()) {
            let Some(addr) = r.value.addr else { continue }; // a bare port: above
            let to = Some(vec![block(&addr.to_string(), None)]);
            egress.push(NetworkPolicyEgressRule { to, ports: Some(vec![port(proto, r.value.port)]) });
        }
    }
    if net.dns.is_some() {
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![cluster_dns()]),
            ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
        });
    }
    let ingress: Vec<NetworkPolicyIngressRule> = match net.ports.bind.is_empty() {
        true => Vec::new(),
        false => vec![NetworkPolicyIngressRule {
            from: None,
            ports: Some(net.ports.bind.iter().map(|p| port("TCP", *p)).collect()),
        }],
    };
    NetworkPolicy {
        metadata: ObjectMeta { name: Some(export.name.clone()), labels: Some(export.labels()), ..Default::default() },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector { match_labels: Some(export.labels()), ..Default::default() }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            egress: Some(egress),
            ingress: Some(ingress),
        }),
    }
}

/// Cilium's policy for the host names: each `HOST:PORT` as `toFQDNs` (`matchName`, or
/// `matchPattern` for a wildcard), and the cluster DNS through Cilium's DNS proxy, which is what
/// lets it learn the names' addresses.
pub fn cilium_policy(plan: &Plan, export: &Export) -> Option<Value> {
    let hosts: Vec<_> =
        plan.net().host_rules.iter().filter_map(|r| Some((r.value.host.clone()?, r.value.port, r.value.udp))).collect();
    if hosts.is_empty() {
        return None;
    }
    let mut egress = vec![json!({
        "toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s:k8s-app": "kube-dns"}}],
        "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{"matchPattern": "*"}]}}],
    })];
    for (host, port, udp) in hosts {
        let selector = match host.starts_with("*.") {
            true => json!({ "matchPattern": host }),
            false => json!({ "matchName": host }),
        };
        let proto = if udp { "UDP" } else { "TCP" };
        egress.push(json!({
            "toFQDNs": [selector],
            "toPorts": [{"ports": [{"port": port.to_string(), "protocol": proto}]}],
        }));
    }
    Some(json!({
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": format!("{}-fqdn", export.name), "labels": export.labels()},
        "spec": {"endpointSelector": {"matchLabels": export.labels()}, "egress": egress},
    }))
}

fn port(protocol: &str, port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort { protocol: Some(protocol.into()), port: Some(IntOrString::Int(port.into())), end_port: None }
}

fn block(cidr: &str, except: Option<Vec<String>>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock { cidr: cidr.into(), except }),
        namespace_selector: None,
        pod_selector: None,
    }
}

/// Every address of one family but the `deny` ranges of that family; `None` when a range
/// denies the whole family.
fn anywhere_but(cidr: &str, deny: &[IpNet], v6: bool) -> Option<NetworkPolicyPeer> {
    let family: Vec<&IpNet> = deny.iter().filter(|d| matches!(d.addr(), IpAddr::V6(_)) == v6).collect();
    if family.iter().any(|d| d.prefix_len() == 0) {
        return None;
    }
    let except: Vec<String> = family.iter().map(|d| d.trunc().to_string()).collect();
    Some(block(cidr, (!except.is_empty()).then_some(except)))
}

/// The cluster's DNS service: kube-dns (CoreDNS keeps the label) in kube-system.
fn cluster_dns() -> NetworkPolicyPeer {
    let labels = |k: &str, v: &str| LabelSelector {
        match_labels: Some([(k.to_string(), v.to_string())].into()),
        ..Default::default()
    };
    NetworkPolicyPeer {
        ip_block: None,
        namespace_selector: Some(labels("kubernetes.io/metadata.name", "kube-system")),
        pod_selector: Some(labels("k8s-app", "kube-dns")),
    }
}
