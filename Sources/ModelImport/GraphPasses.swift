/// Whole-graph facts the converter needs before it walks the nodes in order:
///
/// - **Straight-through estimators.** Training code writes `sign(x).detach() - f(x).detach()
///   + f(x)` (Bi-Real's and ReActNet's ApproxSign, the STE weights of HardBinaryConv). In an
///   inference export `detach` vanishes and the graph holds `Add(Sub(a, b), b)`, whose value
///   is `a` up to float rounding. When `b` has no other use, the Add is `a`, and the nodes
///   that only compute `b` are dropped. When `b` is used elsewhere the identity cannot be
///   proved cheap, so nothing is rewritten (and a Sub of two activations is refused).
/// - **Liveness.** Nodes whose results do not reach the graph output are dropped.
/// - **The input's layout.** A 4-D input read only through `Transpose(perm=[0,3,1,2])` is
///   an NHWC input (Keras through tf2onnx).
struct GraphPlan {
    /// For the Add node of an STE idiom: the name of `a`, of `b`, and the Sub node's index.
    var steAlias: [Int: (a: String, b: String, sub: Int)] = [:]
    /// For every node that does not reach the output: why it is dropped.
    var dropped: [Int: String] = [:]
    /// Sub node name -> the other readers of its `b`, for Add(Sub(a, b), b) shapes whose
    /// `b` is used elsewhere (for the error message, should the Sub need converting).
    var unprovenSTE: [String: String] = [:]
    var inputLayout: ViewLayout = .nchw

    init(_ graph: ONNXGraph) {
        let nodes = graph.nodes
        var producer: [String: Int] = [:]
        for (index, node) in nodes.enumerated() { for output in node.outputs where !output.isEmpty { producer[output] = index } }
        var readers: [String: [Int]] = [:]
        for (index, node) in nodes.enumerated() { for input in node.inputs where !input.isEmpty { readers[input, default: []].append(index) } }
        let isOutput = { (name: String) in name == graph.output }

        for (index, node) in nodes.enumerated() where node.opType == "Add" && node.inputs.count == 2 {
            for (subSide, other) in [(0, 1), (1, 0)] {
                let subName = node.inputs[subSide], b = node.inputs[other]
                guard let s = producer[subName], nodes[s].opType == "Sub", nodes[s].inputs.count == 2,
                      nodes[s].inputs[1] == b, nodes[s].inputs[0] != b else { continue }
                let subReaders = readers[subName] ?? []
                let bReaders = Set(readers[b] ?? [])
                guard subReaders == [index], !isOutput(subName) else { continue }
                if bReaders == [s, index], !isOutput(b) {
                    steAlias[index] = (nodes[s].inputs[0], b, s)
                } else {
                    let others = bReaders.subtracting([s, index]).sorted().map { "'\(nodes[$0].name)'" }
                    unprovenSTE[nodes[s].name] = isOutput(b) ? "the graph output" : others.joined(separator: ", ")
                }
                break
            }
        }

        // Liveness, backwards from the output; an STE Add depends only on `a`.
        var liveNames: Set<String> = [graph.output]
        var live = [Bool](repeating: false, count: nodes.count)
        for index in nodes.indices.reversed() {
            let node = nodes[index]
            guard node.outputs.contains(where: { liveNames.contains($0) }) else { continue }
            live[index] = true
            if let alias = steAlias[index] {
                liveNames.insert(alias.a)
            } else {
                for input in node.inputs where !input.isEmpty { liveNames.insert(input) }
            }
        }
        // Each dead node is named after the first STE whose b it feeds: one walk back from
        // every b that stops at nodes already named, so the whole pass stays linear.
        var straightThroughOf: [Int: Int] = [:]
        for add in steAlias.keys.sorted() where live[add] {
            let alias = steAlias[add]!
            straightThroughOf[alias.sub] = add
            var stack = [alias.b]
            while let name = stack.popLast() {
                guard let p = producer[name], !live[p], straightThroughOf[p] == nil else { continue }
                straightThroughOf[p] = add
                stack.append(contentsOf: nodes[p].inputs.filter { !$0.isEmpty })
            }
        }
        for index in nodes.indices where !live[index] {
            if let add = straightThroughOf[index], steAlias[add]!.sub == index {
                dropped[index] = "dropped: the a - b of the straight-through estimator a - b + b at node '\(nodes[add].name)'"
            } else if let add = straightThroughOf[index] {
                dropped[index] = "dropped: computes only the straight-through part b of the estimator a - b + b at node '\(nodes[add].name)'"
            } else {
                dropped[index] = "dropped: its result does not reach the graph output"
            }
        }

        let consumers = readers[graph.input.name] ?? []
        let liveConsumers = consumers.filter { live[$0] }
        if graph.input.dims.count == 4, !liveConsumers.isEmpty,
           liveConsumers.allSatisfy({ nodes[$0].opType == "Transpose" && nodes[$0].ints("perm") == [0, 3, 1, 2] }) {
            inputLayout = .nhwc
        }
    }
}
