import FleetKit
import Foundation
import Testing

/// `fleetctl model push model.onnx` of a model whose weights are in `model.onnx.data`
/// (PyTorch's dynamo exporter): fleetctl sends the pair as one self-contained model, the
/// controller converts it; without the data file the push fails naming it, and nothing is
/// stored.
@Suite("Pushing ONNX models with external data", .serialized)
struct ONNXPushTests {
    static let fixtures = repositoryRoot.appendingPathComponent("Tests/Fixtures/onnx")

    @Test("the .onnx and its .onnx.data are pushed together; a missing data file is refused")
    func pushPair() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        let folder = fleet.root.appendingPathComponent("export")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let name = "torch_reactnet_dynamo_opset18"
        let model = folder.appendingPathComponent("\(name).onnx")
        try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("\(name).onnx"), to: model)

        let refused = try fleet.fleetctl(["model", "push", model.path, "--name", "reactnet"], expectFailure: true)
        #expect(refused.contains("\(name).onnx.data") && refused.contains("does not exist beside the model"), "\(refused)")
        #expect(try await fleet.admin.json("GET", "/api/v1/models", as: [ModelVersionInfo].self).isEmpty)

        try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("\(name).onnx.data"),
                                         to: folder.appendingPathComponent("\(name).onnx.data"))
        let pushed = try fleet.fleetctl(["model", "push", model.path, "--name", "reactnet"])
        #expect(pushed.contains("pushed reactnet v1"), "\(pushed)")
        #expect(pushed.contains("with its external data \(name).onnx.data"), "\(pushed)")
        let models = try await fleet.admin.json("GET", "/api/v1/models", as: [ModelVersionInfo].self)
        #expect(models.count == 1 && models[0].inputShape == [1, 3, 16, 16] && models[0].outputShape == [1, 10])
        #expect(models[0].binaryMACs > 0)
    }
}
