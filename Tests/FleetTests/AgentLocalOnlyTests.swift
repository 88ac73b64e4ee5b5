@testable import FleetAgent
import NIOCore
import Testing

/// `/v1/infer` serves only clients on the device itself (docs/API.md). The decision is
/// tested on peer addresses directly: connecting from a non-loopback address would need a
/// network this test must not use.
@Suite("Agent local-only inference")
struct AgentLocalOnlyTests {
    @Test("loopback peers are local; every other address, and an unknown peer, is not")
    func loopbackOnly() throws {
        for local in ["127.0.0.1", "127.45.6.7", "::1", "::ffff:127.0.0.1"] {
            #expect(AgentRequestContext.isLoopback(try SocketAddress(ipAddress: local, port: 40_000)), "\(local) is local")
        }
        // Documentation ranges and private ones: never contacted, only classified.
        for remote in ["192.0.2.10", "10.0.0.5", "172.16.0.1", "128.0.0.1", "0.0.0.0", "2001:db8::1", "::", "::ffff:192.0.2.10", "fe80::1"] {
            #expect(!AgentRequestContext.isLoopback(try SocketAddress(ipAddress: remote, port: 40_000)), "\(remote) is not local")
        }
        #expect(!AgentRequestContext.isLoopback(nil), "a peer whose address is unknown is not local")
        #expect(AgentRequestContext.isLoopback(try SocketAddress(unixDomainSocketPath: "/tmp/agent.sock")))
    }
}
